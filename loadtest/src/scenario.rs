//! The six standard scenarios, by name: the same names as the ghz configs in
//! `loadtest/ghz/`. A scenario fixes the corpus shape (algorithms, batch,
//! distinct tokens, invalid kinds and share, memo hit ratio) and the jwtd
//! `[cache]` settings that make it hot or cold; run options stay free.
//!
//! Decisions for `overload` (jwtd's admission control: a bound on cold
//! tokens, calls past it shed with RESOURCE_EXHAUSTED, calls of memo hits
//! never shed):
//! - **Hot and cold calls, not tokens.** Admission is decided per call, on
//!   its cold tokens, so the hot share is one of calls: a quarter of the
//!   calls take all 32 tokens from 64 that stay memoized (they must never be
//!   shed), the rest take 32 consecutive tokens of an 8,192-token cycle, four
//!   times the 2,048-entry memo, so they miss.
//! - **32 tokens per call, not 8.** The overload to show is of signature
//!   work, not of the transport. With 8 tokens per call, 3× capacity was
//!   16,600 calls/s, more calls than a 2-core machine shared with the driver
//!   can even receive (jwtd's own per-call cost, ~60 µs, times that rate is
//!   a core): every call then queued in the socket and HTTP/2 layers before
//!   admission control saw it, and admitted p50 was 0.9 s with or without
//!   it (BENCHMARKS.md keeps that run). 32 tokens per call keep 3× capacity
//!   within what the transport takes, so what is measured is what admission
//!   control does.
//! - **Why 32 hot tokens in 2,048 entries.** A hot call that is no longer
//!   all hits may be shed, which the driver counts as an error, so the hot
//!   set must stay memoized. jwtd's CLOCK eviction drops an entry that was
//!   not hit during one turn of its hand (about 2,000 inserts here, some
//!   60 cold calls and 20 hot ones). Each hot call takes 32 of the 64, so a
//!   hot token sits out 20 hot calls with probability (1/2)^20, about 1e-6.
//!   (The hand used to drop a hit entry outright after 16 hit ones in a row;
//!   jwtd now drops the newcomer instead, and the driver's priming order
//!   still keeps hot entries apart.)
//!   Runs must also stay under `memo_max_ttl_seconds` (300 s by default)
//!   after priming, or every hot entry expires at once.
//! - **The cold cycle is sized to the offered load, not fixed.** A cold
//!   token must not come round while its last copy may still be queued or
//!   memoized: at 22k calls/s the 8,192-token cycle repeats every 70 ms, and
//!   a release run at 3× capacity saw 49% memo hits instead of 25% (and hot
//!   entries evicted in the churn). `measure.sh` writes the open-loop corpus
//!   with `--distinct` of rate × (deadline + 250 ms) × 24 cold tokens (3/4
//!   of 32 per call).
//! - **No `max_pending_tokens` in its config**, so the same file runs on a
//!   jwtd without admission control (a baseline) and on one with its
//!   default bound. Its `/metrics` is on, for the server-side time of shed
//!   and admitted calls.

use std::fmt;

/// A signing algorithm the corpus can use (keys from `tests/data/keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RS256 with an RSA-2048 key.
    Rs256,
    /// RS256 with an RSA-3072 key.
    Rs256k3072,
    /// ES256 (P-256).
    Es256,
    /// ES384 (P-384).
    Es384,
    /// EdDSA (Ed25519).
    EdDsa,
}

impl Alg {
    /// Every algorithm, in JWKS order.
    pub const ALL: [Alg; 5] = [
        Alg::Rs256,
        Alg::Rs256k3072,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs256k3072 => "RS256-3072",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm for a command-line name.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The kid of its key in the corpus JWKS.
    pub fn kid(self) -> &'static str {
        match self {
            Alg::Rs256 => "load-rsa2048",
            Alg::Rs256k3072 => "load-rsa3072",
            Alg::Es256 => "load-p256",
            Alg::Es384 => "load-p384",
            Alg::EdDsa => "load-ed25519",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a corpus token is, and so which Status jwtd must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Signed by a JWKS key, in date, right audience: VALID.
    Valid,
    /// `exp` an hour ago (beyond the 60 s leeway): EXPIRED.
    Expired,
    /// A valid token's signature over a different payload: BAD_SIGNATURE.
    BadSignature,
    /// `aud` names another API: AUDIENCE_MISMATCH.
    WrongAudience,
    /// Not a compact JWS: MALFORMED.
    Garbage,
    /// A kid that no JWKS key has (random per token): UNKNOWN_KEY.
    UnknownKid,
}

impl Kind {
    /// The `jwtd.v1.Status` jwtd must answer for this kind.
    pub fn expected(self) -> jwtd::pb::Status {
        use jwtd::pb::Status;
        match self {
            Kind::Valid => Status::Valid,
            Kind::Expired => Status::Expired,
            Kind::BadSignature => Status::BadSignature,
            Kind::WrongAudience => Status::AudienceMismatch,
            Kind::Garbage => Status::Malformed,
            Kind::UnknownKid => Status::UnknownKey,
        }
    }
}

/// How the token stream reuses the distinct tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reuse {
    /// The stream cycles through `distinct` tokens in order. With the memo off
    /// every token is cold; with it on, all but the first pass are hits.
    Cycle {
        /// Distinct tokens.
        distinct: usize,
    },
    /// A share `hot_share` of the stream is drawn from `hot` tokens that stay
    /// memoized; the rest walks a cycle of `cold` tokens too long for the memo
    /// (`memo_entries` in [`Scenario::memo_entries`]), so those miss.
    HotCold {
        /// Tokens that stay memoized.
        hot: usize,
        /// Tokens that the memo cannot hold between reuses.
        cold: usize,
        /// Share of the stream drawn from the hot set.
        hot_share: f64,
    },
    /// A share `hot_share` of the calls take all their tokens (distinct)
    /// from `hot` tokens that stay memoized; every other call takes the next
    /// `batch` tokens of a cycle of `cold` (rounded up to whole calls). The
    /// corpus records which calls are hot.
    HotColdCalls {
        /// Tokens that stay memoized (at least a batch).
        hot: usize,
        /// Tokens of the cold cycle.
        cold: usize,
        /// Share of the calls that are hot.
        hot_share: f64,
    },
}

/// A scenario: everything that shapes its corpus and its jwtd config.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The name (`single-cold`, …).
    pub name: String,
    /// Tokens per Verify call.
    pub batch: usize,
    /// Algorithms of the valid tokens, used round-robin.
    pub algs: Vec<Alg>,
    /// Stream shape.
    pub reuse: Reuse,
    /// Share of distinct tokens that are not Valid.
    pub invalid_share: f64,
    /// The kinds the invalid ones are spread over, evenly.
    pub invalid_kinds: Vec<Kind>,
    /// Bytes of padding claims, so tokens have a realistic size.
    pub claim_bytes: usize,
    /// jwtd `cache.memo_entries` (0 = memo off: every signature is checked).
    pub memo_entries: usize,
    /// jwtd `cache.negative_entries`.
    pub negative_entries: usize,
    /// Whether its jwtd config serves `/metrics`.
    pub metrics: bool,
}

/// The standard scenario names, in table order.
pub const NAMES: [&str; 6] = [
    "single-cold",
    "batch64-cold",
    "batch64-hot",
    "mixed",
    "flood",
    "overload",
];

/// Padding that makes an RS256 token about 720 bytes, the "typical access
/// token" of `benches/verify.rs`, so service and core numbers compare.
pub const DEFAULT_CLAIM_BYTES: usize = 200;

impl Scenario {
    /// The standard scenario called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        let base = Scenario {
            name: name.to_owned(),
            batch: 64,
            algs: vec![Alg::Rs256],
            reuse: Reuse::Cycle { distinct: 2048 },
            invalid_share: 0.0,
            invalid_kinds: Vec::new(),
            claim_bytes: DEFAULT_CLAIM_BYTES,
            memo_entries: 0,
            negative_entries: 0,
            metrics: false,
        };
        let scenario = match name {
            // Latency of one cold RS256 token per call. The memo is off, so a
            // short cycle of distinct tokens is as cold as an endless stream
            // (signing 100k RSA tokens up front would take minutes).
            "single-cold" => Scenario { batch: 1, ..base },
            // Full signature work at 64 tokens per call.
            "batch64-cold" => base,
            // A small set that stays memoized: the memo path end to end.
            "batch64-hot" => Scenario {
                reuse: Reuse::Cycle { distinct: 256 },
                memo_entries: 100_000,
                negative_entries: 10_000,
                ..base
            },
            // 90% memo hits, RS256/ES256/EdDSA, 2% invalid.
            "mixed" => Scenario {
                batch: 16,
                algs: vec![Alg::Rs256, Alg::Es256, Alg::EdDsa],
                reuse: Reuse::HotCold {
                    hot: 512,
                    cold: 2048,
                    hot_share: 0.9,
                },
                invalid_share: 0.02,
                invalid_kinds: vec![
                    Kind::Expired,
                    Kind::BadSignature,
                    Kind::WrongAudience,
                    Kind::Garbage,
                ],
                // Room for the hot set, far too little for the cold cycle.
                memo_entries: 1024,
                negative_entries: 10_000,
                ..base
            },
            // Garbage, bad signatures and random kids, with 10% valid tokens
            // that must stay VALID. Memo and negative memo at their defaults.
            "flood" => Scenario {
                invalid_share: 0.9,
                invalid_kinds: vec![Kind::Garbage, Kind::BadSignature, Kind::UnknownKid],
                memo_entries: 100_000,
                negative_entries: 10_000,
                ..base
            },
            // Offered above capacity: a quarter of the calls all memo hits,
            // the rest cold (see the module doc).
            "overload" => Scenario {
                batch: 32,
                reuse: Reuse::HotColdCalls {
                    hot: 64,
                    cold: 8192,
                    hot_share: 0.25,
                },
                memo_entries: 2048,
                negative_entries: 10_000,
                metrics: true,
                ..base
            },
            _ => return None,
        };
        Some(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_name_is_defined() {
        for name in NAMES {
            let s = Scenario::named(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(s.name, name);
            assert!(s.batch >= 1);
            // Only overload serves /metrics; the others measure jwtd alone.
            assert_eq!(s.metrics, name == "overload", "{name}");
        }
        assert!(Scenario::named("nope").is_none());
    }

    /// ghz is not installable here, so its configs are checked against
    /// ghz's own `runner.Config` JSON keys (ghz 0.115, runner/config.go) and
    /// against the scenarios and the proto they must name.
    #[test]
    fn every_scenario_has_a_ghz_config_ghz_can_read() {
        const GHZ_KEYS: [&str; 17] = [
            "call",
            "host",
            "insecure",
            "data-file",
            "connections",
            "concurrency",
            "duration",
            "total",
            "rps",
            "skipFirst",
            "timeout",
            "metadata",
            "connect-timeout",
            "keepalive",
            "cpus",
            "format",
            "output",
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ghz");
        let proto = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/jwtd/v1/jwtd.proto"),
        )
        .expect("the Verify proto");
        assert!(proto.contains("package jwtd.v1;") && proto.contains("service VerifierService"));
        for name in NAMES {
            let path = dir.join(format!("{name}.json"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let config: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for key in config.keys() {
                assert!(
                    GHZ_KEYS.contains(&key.as_str()),
                    "{name}: ghz has no key {key:?}"
                );
            }
            assert_eq!(config["call"], "jwtd.v1.VerifierService.Verify", "{name}");
            assert_eq!(
                config["data-file"],
                format!("target/loadtest/ghz/{name}/ghz-data.json"),
                "{name}: the data file the README's corpus command writes"
            );
            assert!(
                config.get("proto").is_none(),
                "{name}: reflection, not --proto"
            );
            for key in ["rps", "connections", "concurrency", "skipFirst", "total"] {
                if let Some(v) = config.get(key) {
                    assert!(
                        v.as_u64().is_some_and(|n| n > 0),
                        "{name}: {key} {v} is not a positive integer (ghz reads a uint)"
                    );
                }
            }
            for key in ["duration", "timeout"] {
                if let Some(v) = config.get(key) {
                    let v = v.as_str().unwrap_or_default();
                    assert!(
                        v.strip_suffix('s')
                            .is_some_and(|n| n.parse::<u32>().is_ok()),
                        "{name}: {key} {v:?} is not a Go duration in seconds"
                    );
                }
            }
        }
    }

    #[test]
    fn overload_cold_cycle_outgrows_the_memo_and_the_hot_set_fits() {
        let s = Scenario::named("overload").expect("standard");
        let Reuse::HotColdCalls {
            hot,
            cold,
            hot_share,
        } = s.reuse
        else {
            panic!("overload is hot and cold by call: {:?}", s.reuse);
        };
        assert_eq!(s.batch, 32);
        assert!(hot >= s.batch && hot * 4 <= s.memo_entries, "{hot}");
        assert!(cold >= 4 * s.memo_entries, "{cold}");
        assert!((0.2..=0.3).contains(&hot_share));
        assert_eq!(s.algs, vec![Alg::Rs256]);
        assert_eq!(s.invalid_share, 0.0);
    }

    #[test]
    fn alg_names_round_trip() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }
}
