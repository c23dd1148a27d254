"""STA, the Simple Torrent-like Application: a BitTorrent tracker, seeder and downloader."""

__version__ = "0.1.0"
