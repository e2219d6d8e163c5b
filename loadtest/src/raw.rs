//! The crypto floor in the same run as the service measurements: the
//! corpus's RS256 tokens verified by aws-lc-rs with pre-parsed keys (jwtd's
//! own [`jwtd::keys::Key::verify`], nothing else) on N threads for a fixed
//! time. `measure.sh` runs it beside each scenario so `jwtd / raw` needs no
//! number from another run or another tool (issue 14, target 4).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::Error;
use crate::corpus::{Corpus, files};
use jwtd::jose::Algorithm;
use jwtd::keys::{Key, KeySet, Origin};

/// One signature check's inputs: the key, the signing input, the signature.
type Check = (Arc<Key>, Vec<u8>, Vec<u8>);

/// The VALID RS256 tokens of the corpus in `dir`, ready to verify: key
/// chosen by kid, signature decoded.
pub fn checks(dir: &Path) -> Result<Vec<Check>, Error> {
    let corpus = Corpus::read(dir)?;
    let jwks_path = dir.join(files::JWKS);
    let jwks = std::fs::read(&jwks_path).map_err(|e| Error::io(&jwks_path, e))?;
    let (keys, _) = KeySet::from_jwks(&jwks, Origin::LocalFile)
        .map_err(|e| Error::Corpus(format!("{}: {e}", jwks_path.display())))?;
    let mut checks = Vec::new();
    for (status, token) in &corpus.stream {
        if *status != jwtd::pb::Status::Valid {
            continue;
        }
        let Some((input, signature)) = token.rsplit_once('.') else {
            continue;
        };
        let header = input.split('.').next().unwrap_or_default();
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .unwrap_or_default();
        if header["alg"] != "RS256" {
            continue;
        }
        let Some(key) = header["kid"].as_str().and_then(|kid| keys.by_kid(kid)) else {
            continue;
        };
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
            continue;
        };
        checks.push((Arc::clone(key), input.as_bytes().to_vec(), signature));
    }
    if checks.is_empty() {
        return Err(Error::Corpus(format!(
            "{} holds no VALID RS256 token with a kid its JWK Set has",
            dir.display()
        )));
    }
    Ok(checks)
}

/// Verifies `checks` round-robin on `threads` threads for `duration`;
/// returns signature checks per second, all threads together. A check
/// that fails is an error: the corpus said the token is VALID.
pub fn measure(checks: &[Check], threads: usize, duration: Duration) -> Result<f64, Error> {
    let done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (done, failed, stop) = (&done, &failed, &stop);
            s.spawn(move || {
                let mut n = 0u64;
                let mut i = t * checks.len() / threads.max(1);
                while !stop.load(Ordering::Relaxed) {
                    // Check the clock once per 64 verifications (~1.5 ms).
                    for _ in 0..64 {
                        let (key, input, signature) = &checks[i % checks.len()];
                        if key.verify(Algorithm::RS256, input, signature).is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        i += 1;
                        n += 1;
                    }
                    if t == 0 && started.elapsed() >= duration {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) {
        return Err(Error::Corpus(
            "a VALID RS256 token of the corpus failed its signature check".into(),
        ));
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// The report `jwtd-load table` reads: scenario `raw-rs256`, label `raw`.
pub fn report(corpus: &Path, threads: usize, tokens_per_sec: f64) -> Value {
    json!({
        "scenario": "raw-rs256",
        "options": { "label": "raw", "threads": threads, "corpus": corpus.display().to_string() },
        "tokensPerSec": tokens_per_sec,
    })
}
