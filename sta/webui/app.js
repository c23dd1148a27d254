// STA's web page: the torrents of one node, updated every second without a reload.
// Everything it shows comes from /api (webapi.py); text from torrents is only ever set with
// textContent, never as HTML.
"use strict";

var POLL_MS = 1000;           // the list: once a second, as the shell's status line
var DETAIL_POLL_MS = 2000;    // the open torrent's files, peers and pieces
var SESSION_HEADER = "X-Transmission-Session-Id";
var sessionId = "";
var noticeNumber = 0;
var openHash = null;
var rowsByHash = {};

function $(id) { return document.getElementById(id); }

function el(tag, cls, text) {
  var node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function size(bytes) {
  var units = ["B", "KiB", "MiB", "GiB", "TiB"];
  var n = bytes, i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + " " + units[i];
}

function rate(bytes) { return bytes >= 1 ? size(Math.round(bytes)) + "/s" : "–"; }

function eta(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  var s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
}

function percent(p) { return (Math.floor(p * 1000) / 10).toFixed(1) + "%"; }

// One request to the API; a 409 brings the session id the server wants, and the request is
// sent once more with it (Transmission's exchange, which keeps other sites from posting here).
function api(method, path, body, retried) {
  var options = { method: method, headers: {}, credentials: "same-origin", cache: "no-store" };
  if (sessionId) options.headers[SESSION_HEADER] = sessionId;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  return fetch(path, options).then(function (response) {
    var id = response.headers.get(SESSION_HEADER);
    if (id) sessionId = id;
    if (response.status === 409 && !retried) return api(method, path, body, true);
    return response.json().catch(function () { return { error: "HTTP " + response.status }; })
      .then(function (value) {
        if (!response.ok) throw new Error(value.error || ("HTTP " + response.status));
        return value;
      });
  });
}

function showError(text) {
  var box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

// -- the list ----------------------------------------------------------------------------------

function makeRow(t) {
  var row = el("div", "row torrent");
  row.dataset.hash = t.info_hash;
  var name = el("button", "name");
  name.type = "button";
  name.title = "details";
  name.addEventListener("click", function () { openDetail(t.info_hash); });
  row.appendChild(name);
  ["size", "progress", "state", "down", "up", "peers", "eta", "ratio"].forEach(function (k) {
    var cell = el("span", k);
    cell.dataset.label = k;
    if (k === "progress") {
      var bar = el("span", "bar");
      bar.appendChild(el("span", "fill"));
      cell.appendChild(bar);
      cell.appendChild(el("span", "pct"));
    }
    row.appendChild(cell);
  });
  var actions = el("span", "buttons");
  var toggle = el("button", "toggle");
  toggle.type = "button";
  toggle.addEventListener("click", function () {
    var hash = row.dataset.hash;
    act(hash, row.dataset.state === "paused" || row.dataset.state === "error" ? "resume" : "pause");
  });
  var remove = el("button", "remove", "Remove");
  remove.type = "button";
  remove.addEventListener("click", function () { removeTorrent(row.dataset.hash, false); });
  actions.appendChild(toggle);
  actions.appendChild(remove);
  row.appendChild(actions);
  return row;
}

function fillRow(row, t) {
  row.dataset.state = t.state;
  row.dataset.progress = t.progress.toFixed(4);
  row.querySelector(".name").textContent = t.name;
  row.querySelector(".size").textContent = t.size ? size(t.size) : "?";
  row.querySelector(".fill").style.width = (t.progress * 100).toFixed(1) + "%";
  row.querySelector(".pct").textContent = percent(t.progress);
  var state = row.querySelector(".state");
  state.textContent = t.state === "metadata" ? "fetching metadata" : t.state;
  state.title = t.error || "";
  row.querySelector(".down").textContent = rate(t.down_rate);
  row.querySelector(".up").textContent = rate(t.up_rate);
  row.querySelector(".peers").textContent = t.peers + (t.seeds ? " (" + t.seeds + " seeds)" : "");
  row.querySelector(".eta").textContent = eta(t.eta);
  row.querySelector(".ratio").textContent = t.ratio.toFixed(2);
  var paused = t.state === "paused" || t.state === "error";
  row.querySelector(".toggle").textContent = paused ? "Resume" : "Pause";
}

function renderList(data) {
  var box = $("rows");
  var seen = {};
  data.torrents.forEach(function (t) {
    var row = rowsByHash[t.info_hash];
    if (!row) { row = makeRow(t); rowsByHash[t.info_hash] = row; }
    box.appendChild(row);  // keeps the node's order; an existing row only moves
    fillRow(row, t);
    seen[t.info_hash] = true;
  });
  Object.keys(rowsByHash).forEach(function (hash) {
    if (!seen[hash]) { box.removeChild(rowsByHash[hash]); delete rowsByHash[hash]; }
  });
  $("empty").hidden = data.torrents.length > 0;
  var s = data.stats;
  $("totals").textContent = data.torrents.length + " torrent" + (data.torrents.length === 1 ? "" : "s") +
    " · ↓ " + rate(s.down_rate) + " · ↑ " + rate(s.up_rate) + " · " + s.peers + " peers · ratio " +
    s.ratio.toFixed(2) + " · peer port " + s.listen_port;
  data.notices.forEach(function (n) {
    noticeNumber = Math.max(noticeNumber, n.number);
    var item = el("li", "", new Date(n.time * 1000).toLocaleTimeString() + "  " + n.text);
    $("notice-list").insertBefore(item, $("notice-list").firstChild);
  });
  $("notices").hidden = !$("notice-list").firstChild;
  if (openHash && !seen[openHash]) closeDetail();
}

function pollList() {
  api("GET", "api/torrents?notices=" + noticeNumber).then(function (data) {
    showError("");
    renderList(data);
  }).catch(function (e) {
    showError("The node does not answer (" + e.message + "); trying again.");
  }).then(function () { setTimeout(pollList, POLL_MS); });
}

// -- actions -----------------------------------------------------------------------------------

function act(hash, action, body) {
  return api("POST", "api/torrents/" + hash + "/" + action, body || {})
    .catch(function (e) { showError(action + ": " + e.message); });
}

function removeTorrent(hash, deleteFiles) {
  var row = rowsByHash[hash];
  var name = row ? row.querySelector(".name").textContent : hash;
  var question = deleteFiles
    ? "Remove " + name + " and DELETE its downloaded files from disk?"
    : "Remove " + name + "? Its files stay on disk.";
  if (!window.confirm(question)) return;
  act(hash, "remove", { delete_files: deleteFiles }).then(function () {
    if (openHash === hash) closeDetail();
  });
}

function readBase64(file) {
  return new Promise(function (resolve, reject) {
    var reader = new FileReader();
    reader.onload = function () { resolve(String(reader.result).split(",")[1] || ""); };
    reader.onerror = function () { reject(new Error("cannot read " + file.name)); };
    reader.readAsDataURL(file);
  });
}

function addTorrent(event) {
  event.preventDefault();
  var file = $("add-file").files[0];
  var link = $("add-magnet").value.trim();
  var result = $("add-result");
  if (!file && !link) { result.textContent = "choose a .torrent file or paste a magnet link"; return; }
  var body = file ? readBase64(file).then(function (b) { return { metainfo: b }; })
                  : Promise.resolve({ magnet: link });
  body.then(function (b) { return api("POST", "api/add", b); }).then(function (answer) {
    var t = answer.torrent;
    result.textContent = t.duplicate ? t.name + " is already here" : "added " + t.name;
    $("add").reset();
  }).catch(function (e) { result.textContent = e.message; });
}

// -- the detail view ---------------------------------------------------------------------------

// The open torrent is kept in the address (#INFOHASH), so a detail view can be bookmarked.
function openDetail(hash) {
  openHash = hash;
  if (location.hash !== "#" + hash) history.replaceState(null, "", "#" + hash);
  $("detail").hidden = false;
  pollDetail(true);
  $("detail").scrollIntoView({ behavior: "smooth" });
}

function closeDetail() {
  openHash = null;
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  $("detail").hidden = true;
}

function pollDetail(once) {
  var hash = openHash;
  if (!hash) return;
  api("GET", "api/torrents/" + hash).then(function (d) {
    if (openHash === hash) renderDetail(d);
  }).catch(function (e) { showError(e.message); }).then(function () {
    if (!once && openHash === hash) setTimeout(pollDetail, DETAIL_POLL_MS);
  });
  if (once) setTimeout(pollDetail, DETAIL_POLL_MS);
}

function tableRows(tbody, rows) {
  while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
  rows.forEach(function (cells) {
    var tr = el("tr");
    cells.forEach(function (c) { tr.appendChild(el("td", "", c)); });
    tbody.appendChild(tr);
  });
}

function renderDetail(d) {
  $("detail-name").textContent = d.name;
  $("detail-summary").textContent = percent(d.progress) + " of " + (d.size ? size(d.size) : "?") +
    " · " + d.state + (d.error ? " (" + d.error + ")" : "") + " · info hash " + d.info_hash;
  tableRows($("files").tBodies[0], d.files.map(function (f) {
    return [f.name, size(f.length), f.length ? percent(f.done / f.length) : "100.0%"];
  }));
  tableRows($("peers").tBodies[0], d.peers.map(function (p) {
    return [p.address, p.client, rate(p.down_rate), rate(p.up_rate), percent(p.progress), p.flags];
  }));
  drawPieces(d.pieces);
  $("piece-count").textContent = d.piece_count ? "(" + d.piece_count + " of " + size(d.piece_size) + ")" : "";
  drawGraph(d.rates);
}

var SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  var node = document.createElementNS(SVG, tag);
  Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function drawPieces(cells) {
  var svg = $("pieces");
  clear(svg);
  var width = 512 / Math.max(cells.length, 1);
  cells.forEach(function (share, i) {
    if (share > 0) {
      svg.appendChild(svgEl("rect", { x: i * width, y: 0, width: width + 0.2, height: 16,
                                      "fill-opacity": 0.25 + 0.75 * share, "class": "piece" }));
    }
  });
}

function drawGraph(points) {
  var svg = $("graph");
  clear(svg);
  if (points.length < 2) { $("graph-peak").textContent = "(gathering…)"; return; }
  var t0 = points[0][0], t1 = points[points.length - 1][0];
  var peak = 1;
  points.forEach(function (p) { peak = Math.max(peak, p[1], p[2]); });
  [1, 2].forEach(function (k) {
    var line = points.map(function (p) {
      return ((p[0] - t0) / Math.max(t1 - t0, 1) * 600).toFixed(1) + "," + (118 - p[k] / peak * 112).toFixed(1);
    }).join(" ");
    svg.appendChild(svgEl("polyline", { points: line, "class": k === 1 ? "down" : "up" }));
  });
  $("graph-peak").textContent = (peak > 1 ? "peak " + rate(peak) : "no traffic") + " · last " + eta(t1 - t0);
}

$("add").addEventListener("submit", addTorrent);
$("detail-close").addEventListener("click", closeDetail);
$("detail-remove").addEventListener("click", function () { if (openHash) removeTorrent(openHash, false); });
$("detail-delete").addEventListener("click", function () { if (openHash) removeTorrent(openHash, true); });
$("detail-verify").addEventListener("click", function () { if (openHash) act(openHash, "verify"); });
pollList();
if (/^#[0-9a-f]{40}$/.test(location.hash)) openDetail(location.hash.slice(1));
