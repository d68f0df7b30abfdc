//! tilefarm's HTTP API: uploads and edits, job status (polling and server-sent
//! events), layer metadata and TileJSON, and the tile origin for the CDN.
//!
//! Nothing is implemented here yet; `tilefarm render` renders pyramids without it.
#![forbid(unsafe_code)]
