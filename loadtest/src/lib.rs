//! jwtd-load: token corpora, a lean gRPC load driver and a transport-ceiling
//! echo server for jwtd (issue 6).
//!
//! The driver is built to saturate jwtd from the same 2-core machine: every
//! request is encoded once when the corpus loads ([`codec::RawCodec`] passes
//! the bytes through tonic untouched), and responses are scanned for their
//! per-token statuses without decoding claims ([`scan`]); one response in
//! [`driver::SAMPLE_EVERY`] is fully decoded with prost as a cross-check.
//! ghz spends about 150 µs of CPU per call plus 9 µs per token on this
//! machine, more than jwtd itself; that is why this exists.
//!
//! Modules: [`scenario`] names the six standard scenarios, [`corpus`] writes
//! and reads token sets, [`driver`] runs load, [`report`] renders ghz-shaped
//! results, [`shed`] tells a shed call from a failed one, [`scrape`] reads
//! jwtd's own latency histogram from `/metrics`, [`echo`] is the no-work
//! server, [`proc_stats`] reads CPU and RSS, [`view`] is a run's
//! `--view` and the shape it asks of each result, [`raw`] measures the
//! RS256 crypto floor in the same run.

pub mod codec;
pub mod corpus;
pub mod driver;
pub mod echo;
pub mod proc_stats;
pub mod raw;
pub mod report;
pub mod rng;
pub mod scan;
pub mod scenario;
pub mod scrape;
pub mod shed;
pub mod table;
pub mod view;

/// Why a jwtd-load command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A corpus directory is incomplete or inconsistent.
    #[error("corpus: {0}")]
    Corpus(String),
    /// A token could not be signed.
    #[error("signing: {0}")]
    Mint(#[from] jwtd::mint::MintError),
    /// The server could not be reached or served.
    #[error("transport: {0}")]
    Transport(String),
    /// JSON could not be written or read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// jwtd's `/metrics` could not be read.
    #[error("metrics: {0}")]
    Scrape(#[from] scrape::ScrapeError),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
