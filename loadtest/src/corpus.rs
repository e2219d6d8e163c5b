//! Token corpora: a pure function of (scenario, seed, now). Writes the
//! token stream with each token's expected Status, the matching JWK Set and
//! jwtd config, and optionally a ghz `--data-file`; reads a corpus back as
//! requests encoded once.
//!
//! The keys are jwtd's public test keys (`tests/data/keys`, made with
//! openssl), so a corpus needs no key generation and RS256 and EdDSA tokens
//! are byte-identical across runs with the same seed and `now`. ECDSA
//! signatures are randomized by aws-lc-rs, so ES256/ES384 tokens differ in
//! their signature part only.
//!
//! A corpus whose calls are hot or cold as a whole (`overload`) lists its
//! hot calls in `corpus.json` (`hotCalls`, call indices at its own batch),
//! so the driver can prime them and hold jwtd to never shedding them.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jwtd::mint::Signer;
use jwtd::pb::{self, Status};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Error;
use crate::rng::SplitMix64;
use crate::scenario::{Alg, Kind, Reuse, Scenario};
use crate::view::View;

/// The issuer of every corpus token.
pub const ISSUER: &str = "https://load.jwtd.local";
/// The audience jwtd requires of corpus tokens.
pub const AUDIENCE: &str = "load-api";

/// What a corpus is made from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario (shape and cache settings).
    pub scenario: Scenario,
    /// The seed of every random choice.
    pub seed: u64,
    /// `iat` of the tokens, in seconds since the epoch (passed in so a corpus
    /// is reproducible).
    pub now: i64,
    /// Lifetime of the valid tokens, in seconds.
    pub ttl: i64,
    /// The `listen` address written into the jwtd config.
    pub listen: String,
    /// The `metrics_listen` address written into the jwtd config (`None`:
    /// `/metrics` off). Passed in, not picked here: finding a free port is
    /// I/O.
    pub metrics_listen: Option<String>,
}

/// A generated corpus, in memory.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// What is written to `corpus.json`.
    pub meta: Meta,
    /// The token stream in send order, each with the Status jwtd must answer.
    pub stream: Vec<(Status, String)>,
    /// The JWK Set of every corpus key.
    pub jwks: Value,
    /// A jwtd config that trusts the JWK Set, with the scenario's cache.
    pub config: String,
}

/// `corpus.json`: how the corpus was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// `iat` of the tokens.
    pub now: i64,
    /// Tokens per call.
    pub batch: usize,
    /// Distinct tokens.
    pub distinct: usize,
    /// Tokens in the stream (a multiple of `batch`).
    pub stream: usize,
    /// Algorithms of the valid tokens.
    pub algs: Vec<String>,
    /// Indices of the calls (of `batch` tokens, in stream order) whose
    /// tokens all come from the hot set: memo hits once primed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot_calls: Vec<usize>,
    /// The `metrics_listen` of the written jwtd config, when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

/// One encoded Verify request and the statuses its answer must hold.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The encoded `VerifyRequest`.
    pub body: Bytes,
    /// `jwtd.v1.Status` per token, in order.
    pub expected: Box<[i32]>,
    /// Every token comes from the corpus's hot set (memo hits once primed).
    pub hot: bool,
    /// The view the request asks for, whose shape each result must have;
    /// `None`: no view sent, no shape checked.
    pub view: Option<View>,
}

fn signer(alg: Alg) -> Result<Signer, Error> {
    // jwtd's own test keys, public on purpose; see tests/data/keys/make_jwks.py.
    let pem = match alg {
        Alg::Rs256 => include_str!("../../tests/data/keys/rsa2048.pem"),
        Alg::Rs256k3072 => include_str!("../../tests/data/keys/rsa3072.pem"),
        Alg::Es256 => include_str!("../../tests/data/keys/p256.pem"),
        Alg::Es384 => include_str!("../../tests/data/keys/p384.pem"),
        Alg::EdDsa => include_str!("../../tests/data/keys/ed25519.pem"),
    };
    Ok(Signer::from_pkcs8_pem(pem, None)?)
}

/// What one distinct token will be; decided before any signing so the random
/// choices do not depend on how signing is spread over threads.
#[derive(Debug, Clone)]
struct Plan {
    index: usize,
    kind: Kind,
    alg: Alg,
    /// Random material for garbage tokens and rogue kids.
    noise: u64,
}

/// Generates the corpus of `options`.
pub fn generate(options: &Options) -> Result<Corpus, Error> {
    let scenario = &options.scenario;
    if scenario.algs.is_empty() || scenario.batch == 0 {
        return Err(Error::Corpus(
            "a scenario needs an algorithm and a batch".into(),
        ));
    }
    if !(0.0..=1.0).contains(&scenario.invalid_share)
        || (scenario.invalid_share > 0.0 && scenario.invalid_kinds.is_empty())
    {
        return Err(Error::Corpus(
            "invalid share must be in [0, 1] and have invalid kinds".into(),
        ));
    }
    let mut rng = SplitMix64::new(options.seed);
    let distinct = match scenario.reuse {
        Reuse::Cycle { distinct } => round_up(distinct.max(1), scenario.batch),
        Reuse::HotCold { hot, cold, .. } => hot.max(1) + cold.max(1),
        Reuse::HotColdCalls { hot, cold, .. } => {
            hot.max(scenario.batch) + round_up(cold.max(1), scenario.batch)
        }
    };

    // An exact number of invalid tokens, kinds evenly spread, positions shuffled.
    let invalid = (scenario.invalid_share * distinct as f64).round() as usize;
    let mut kinds: Vec<Kind> = (0..distinct)
        .map(|i| {
            if i < invalid {
                scenario.invalid_kinds[i % scenario.invalid_kinds.len()]
            } else {
                Kind::Valid
            }
        })
        .collect();
    rng.shuffle(&mut kinds);
    let plans: Vec<Plan> = kinds
        .into_iter()
        .enumerate()
        .map(|(index, kind)| Plan {
            index,
            kind,
            alg: scenario.algs[index % scenario.algs.len()],
            noise: rng.next_u64(),
        })
        .collect();

    let signers: Vec<(Alg, Signer)> = Alg::ALL
        .into_iter()
        .map(|alg| Ok((alg, signer(alg)?)))
        .collect::<Result<_, Error>>()?;
    let tokens = sign_all(&plans, &signers, options)?;

    let pick = |i: usize| (plans[i].kind.expected(), tokens[i].clone());
    let mut hot_calls = Vec::new();
    let stream: Vec<(Status, String)> = match scenario.reuse {
        Reuse::Cycle { .. } => (0..plans.len()).map(pick).collect(),
        Reuse::HotCold {
            hot,
            cold,
            hot_share,
        } => {
            let (hot, cold) = (hot.max(1), cold.max(1));
            let len = round_up(
                (cold as f64 / (1.0 - hot_share).max(0.01)).ceil() as usize,
                scenario.batch,
            );
            let mut next_cold = 0;
            (0..len)
                .map(|_| {
                    let i = if rng.unit() < hot_share {
                        rng.below(hot)
                    } else {
                        next_cold = (next_cold + 1) % cold;
                        hot + next_cold
                    };
                    pick(i)
                })
                .collect()
        }
        Reuse::HotColdCalls { hot_share, .. } => {
            let batch = scenario.batch;
            let hot = hot_calls_set_size(scenario);
            let cold_calls = (distinct - hot) / batch;
            // An exact number of hot calls, at shuffled positions.
            let share = hot_share.clamp(0.0, 0.99);
            let hot_count = (cold_calls as f64 * share / (1.0 - share)).round() as usize;
            let mut is_hot: Vec<bool> =
                (0..cold_calls + hot_count).map(|c| c < hot_count).collect();
            rng.shuffle(&mut is_hot);
            let mut pool: Vec<usize> = (0..hot).collect();
            let mut next_cold = hot;
            let mut stream = Vec::with_capacity(is_hot.len() * batch);
            for (call, &is_hot) in is_hot.iter().enumerate() {
                if is_hot {
                    hot_calls.push(call);
                    // `batch` distinct hot tokens: a partial Fisher–Yates.
                    for i in 0..batch {
                        let j = i + rng.below(hot - i);
                        pool.swap(i, j);
                        stream.push(pick(pool[i]));
                    }
                } else {
                    stream.extend((next_cold..next_cold + batch).map(pick));
                    next_cold += batch;
                }
            }
            stream
        }
    };

    let keys: Vec<Value> = signers
        .iter()
        .filter_map(|(alg, s)| {
            let mut jwk = s.public_jwk()?;
            jwk.as_object_mut()?.insert("kid".into(), alg.kid().into());
            Some(jwk)
        })
        .collect();
    let meta = Meta {
        scenario: scenario.name.clone(),
        seed: options.seed,
        now: options.now,
        batch: scenario.batch,
        distinct,
        stream: stream.len(),
        algs: scenario.algs.iter().map(|a| a.name().to_owned()).collect(),
        hot_calls,
        metrics_listen: options.metrics_listen.clone(),
    };
    Ok(Corpus {
        config: config_toml(options),
        meta,
        stream,
        jwks: json!({ "keys": keys }),
    })
}

fn round_up(n: usize, multiple: usize) -> usize {
    n.div_ceil(multiple) * multiple
}

/// The hot set of a hot-and-cold-by-call scenario: at least one call's worth,
/// so a hot call's tokens are distinct.
fn hot_calls_set_size(scenario: &Scenario) -> usize {
    match scenario.reuse {
        Reuse::HotColdCalls { hot, .. } => hot.max(scenario.batch),
        _ => 0,
    }
}

/// Signs every plan, on all cores: RSA signing is the slow part of making a
/// corpus (about a millisecond per RSA-2048 token).
fn sign_all(
    plans: &[Plan],
    signers: &[(Alg, Signer)],
    options: &Options,
) -> Result<Vec<String>, Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = plans.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| token(p, signers, options))
                        .collect::<Result<Vec<_>, Error>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(plans.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| Error::Corpus("a signing thread panicked".into()))??;
            all.extend(part);
        }
        Ok(all)
    })
}

fn claims(plan: &Plan, options: &Options) -> Map<String, Value> {
    let (iat, exp) = match plan.kind {
        Kind::Expired => (options.now - 7200, options.now - 3600),
        _ => (options.now, options.now + options.ttl),
    };
    let aud = match plan.kind {
        Kind::WrongAudience => "other-api",
        _ => AUDIENCE,
    };
    let mut scope = String::from("read write");
    let mut n = 0;
    while scope.len() < options.scenario.claim_bytes {
        let _ = write!(scope, " api:{n}");
        n += 1;
    }
    let mut claims = Map::new();
    claims.insert("iss".into(), ISSUER.into());
    claims.insert("sub".into(), format!("user-{}", plan.index).into());
    claims.insert("aud".into(), aud.into());
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), exp.into());
    claims.insert(
        "jti".into(),
        format!("{:x}-{}", options.seed, plan.index).into(),
    );
    claims.insert("scope".into(), scope.into());
    claims.insert("tenant".into(), "acme".into());
    claims
}

fn token(plan: &Plan, signers: &[(Alg, Signer)], options: &Options) -> Result<String, Error> {
    let signer_of = |alg: Alg| {
        signers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, s)| s)
            .ok_or_else(|| Error::Corpus(format!("no key for {alg}")))
    };
    let claims = claims(plan, options);
    match plan.kind {
        Kind::Valid | Kind::Expired | Kind::WrongAudience => {
            Ok(signer_of(plan.alg)?.sign(Some(plan.alg.kid()), &claims)?)
        }
        Kind::BadSignature => {
            // A real signature, moved onto a payload it does not cover: the
            // verifier must do the full check to refuse it.
            let signed = signer_of(plan.alg)?.sign(Some(plan.alg.kid()), &claims)?;
            let mut tampered = claims;
            tampered.insert("sub".into(), format!("admin-{}", plan.index).into());
            let payload = URL_SAFE_NO_PAD.encode(Value::Object(tampered).to_string());
            let mut parts = signed.split('.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(_), Some(s)) => Ok(format!("{h}.{payload}.{s}")),
                _ => Err(Error::Corpus(
                    "the signer made a token of the wrong shape".into(),
                )),
            }
        }
        Kind::UnknownKid => {
            let kid = format!("rogue-{:016x}", plan.noise);
            Ok(signer_of(Alg::EdDsa)?.sign(Some(&kid), &claims)?)
        }
        Kind::Garbage => Ok(garbage(plan.noise)),
    }
}

/// A string that is not a compact JWS, of one of a few shapes seen in the
/// wild; every one must be MALFORMED.
fn garbage(noise: u64) -> String {
    let mut rng = SplitMix64::new(noise);
    let len = 16 + rng.below(200);
    let random = URL_SAFE_NO_PAD.encode(rng.bytes(len));
    match noise % 4 {
        // One part: an opaque token or a session id.
        0 => random,
        // Two parts.
        1 => format!(
            "{}.{}",
            &random[..random.len() / 2],
            &random[random.len() / 2..]
        ),
        // Three parts whose header is not JSON.
        2 => format!(
            "{}.{random}.{random}",
            URL_SAFE_NO_PAD.encode(format!("not json {noise}"))
        ),
        // Three parts, header JSON but not base64url (padding and '+').
        _ => format!("eyJhbGciOiJSUzI1NiJ9==.{random}+.{random}"),
    }
}

fn config_toml(options: &Options) -> String {
    let s = &options.scenario;
    format!(
        "# Written by `jwtd-load corpus --scenario {name} --seed {seed}`: a LOAD-TEST\n\
         # config. Its keys are jwtd's public test keys (tests/data/keys); never\n\
         # trust jwks.json outside a test.\n\
         listen = \"{listen}\"\n\
         metrics_listen = \"{metrics}\"\n\
         \n\
         [limits]\n\
         max_batch = {max_batch}\n\
         \n\
         [cache]\n\
         memo_entries = {memo}\n\
         negative_entries = {negative}\n\
         \n\
         [[issuers]]\n\
         issuer = \"{ISSUER}\"\n\
         jwks_file = \"jwks.json\"\n\
         audiences = [\"{AUDIENCE}\"]\n\
         leeway_seconds = 60\n\
         required_claims = [\"sub\"]\n",
        name = s.name,
        seed = options.seed,
        listen = options.listen,
        metrics = options.metrics_listen.as_deref().unwrap_or(""),
        max_batch = s.batch.max(1024),
        memo = s.memo_entries,
        negative = s.negative_entries,
    )
}

/// File names inside a corpus directory.
pub mod files {
    /// How the corpus was made.
    pub const META: &str = "corpus.json";
    /// `STATUS_NAME<TAB>token` per line, in send order.
    pub const TOKENS: &str = "tokens.tsv";
    /// The JWK Set.
    pub const JWKS: &str = "jwks.json";
    /// The jwtd config.
    pub const CONFIG: &str = "jwtd.toml";
}

impl Corpus {
    /// Writes the corpus files into `dir` (created when missing).
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tsv = String::with_capacity(self.stream.len() * 800);
        for (status, token) in &self.stream {
            tsv.push_str(status.as_str_name());
            tsv.push('\t');
            tsv.push_str(token);
            tsv.push('\n');
        }
        write(&dir.join(files::TOKENS), tsv.as_bytes())?;
        write(
            &dir.join(files::JWKS),
            serde_json::to_string_pretty(&self.jwks)?.as_bytes(),
        )?;
        write(&dir.join(files::CONFIG), self.config.as_bytes())?;
        write(
            &dir.join(files::META),
            serde_json::to_string_pretty(&self.meta)?.as_bytes(),
        )
    }

    /// The ghz `--data-file` contents: an array of VerifyRequest messages in
    /// proto JSON, one per call of `batch` tokens; ghz sends them round-robin.
    pub fn ghz_data(&self) -> Value {
        Value::Array(
            self.stream
                .chunks(self.meta.batch)
                .map(|chunk| json!({ "tokens": chunk.iter().map(|(_, t)| t).collect::<Vec<_>>() }))
                .collect(),
        )
    }

    /// Reads the corpus in `dir` (without its JWKS and config).
    pub fn read(dir: &Path) -> Result<Corpus, Error> {
        let meta_path = dir.join(files::META);
        let meta: Meta = serde_json::from_slice(&read(&meta_path)?)?;
        let tokens_path = dir.join(files::TOKENS);
        let text = String::from_utf8(read(&tokens_path)?)
            .map_err(|_| Error::Corpus(format!("{} is not UTF-8", tokens_path.display())))?;
        let stream = text
            .lines()
            .enumerate()
            .map(|(n, line)| {
                let (status, token) = line.split_once('\t').ok_or_else(|| {
                    Error::Corpus(format!("{}:{}: no tab", tokens_path.display(), n + 1))
                })?;
                let status = Status::from_str_name(status).ok_or_else(|| {
                    Error::Corpus(format!(
                        "{}:{}: unknown status {status:?}",
                        tokens_path.display(),
                        n + 1
                    ))
                })?;
                Ok((status, token.to_owned()))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if stream.is_empty() || meta.batch == 0 {
            return Err(Error::Corpus(format!("{} holds no tokens", dir.display())));
        }
        let calls = stream.len().div_ceil(meta.batch);
        if let Some(bad) = meta.hot_calls.iter().find(|&&c| c >= calls) {
            return Err(Error::Corpus(format!(
                "{}: hot call {bad} of {calls}",
                meta_path.display()
            )));
        }
        Ok(Corpus {
            meta,
            stream,
            jwks: Value::Null,
            config: String::new(),
        })
    }

    /// The stream as Verify requests of `batch` tokens (the last one wraps
    /// around to the start), each encoded once. A request is hot when every
    /// one of its tokens sits in a hot call of the corpus (at the corpus's
    /// own batch, exactly its hot calls).
    pub fn requests(&self, batch: usize) -> Vec<Prepared> {
        self.requests_in_view(batch, None)
    }

    /// As [`Corpus::requests`], each request asking for `view` (none sent
    /// when `None`).
    pub fn requests_in_view(&self, batch: usize, view: Option<View>) -> Vec<Prepared> {
        let batch = batch.max(1);
        let calls = self.stream.len().div_ceil(batch);
        let mut hot_token = vec![false; self.stream.len()];
        for &call in &self.meta.hot_calls {
            let from = (call * self.meta.batch).min(hot_token.len());
            let to = (from + self.meta.batch).min(hot_token.len());
            hot_token[from..to].fill(true);
        }
        (0..calls)
            .map(|c| {
                let positions = (0..batch).map(|i| (c * batch + i) % self.stream.len());
                let hot = positions.clone().all(|p| hot_token[p]);
                let picks: Vec<&(Status, String)> = positions.map(|p| &self.stream[p]).collect();
                let request = pb::VerifyRequest {
                    tokens: picks.iter().map(|(_, t)| t.clone()).collect(),
                    view: view.map_or(0, |v| v.wire() as i32),
                    ..pb::VerifyRequest::default()
                };
                Prepared {
                    body: Bytes::from(request.encode_to_vec()),
                    expected: picks.iter().map(|(s, _)| *s as i32).collect(),
                    hot,
                    view,
                }
            })
            .collect()
    }

    /// How many stream tokens expect each status.
    pub fn expected_mix(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut mix = std::collections::BTreeMap::new();
        for (status, _) in &self.stream {
            *mix.entry(status.as_str_name()).or_default() += 1;
        }
        mix
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(name: &str, seed: u64) -> Options {
        let mut scenario = Scenario::named(name).expect("standard");
        // Small enough for a unit test.
        scenario.reuse = match scenario.reuse {
            Reuse::Cycle { .. } => Reuse::Cycle { distinct: 128 },
            Reuse::HotCold { hot_share, .. } => Reuse::HotCold {
                hot: 16,
                cold: 64,
                hot_share,
            },
            Reuse::HotColdCalls { hot_share, .. } => Reuse::HotColdCalls {
                hot: 16,
                cold: 96,
                hot_share,
            },
        };
        Options {
            scenario,
            seed,
            now: 1_700_000_000,
            ttl: 3600,
            listen: "127.0.0.1:0".into(),
            metrics_listen: None,
        }
    }

    #[test]
    fn same_seed_same_corpus() {
        // RS256 and EdDSA signatures are deterministic: byte-identical tokens.
        let mut options = small("flood", 42);
        options.scenario.algs = vec![Alg::Rs256, Alg::EdDsa];
        let a = generate(&options).expect("corpus");
        let b = generate(&options).expect("corpus");
        assert_eq!(a.stream, b.stream);
        assert_eq!(a.jwks, b.jwks);
        assert_eq!(a.meta, b.meta);
        options.seed = 43;
        let c = generate(&options).expect("corpus");
        assert_ne!(a.stream, c.stream);
    }

    #[test]
    fn ecdsa_tokens_differ_only_in_their_signature() {
        let mut options = small("batch64-cold", 1);
        options.scenario.algs = vec![Alg::Es256];
        let a = generate(&options).expect("corpus");
        let b = generate(&options).expect("corpus");
        for ((_, x), (_, y)) in a.stream.iter().zip(&b.stream) {
            assert_eq!(
                x.rsplit_once('.').map(|p| p.0),
                y.rsplit_once('.').map(|p| p.0)
            );
        }
    }

    #[test]
    fn status_mix_matches_the_invalid_share() {
        let options = small("flood", 7);
        let corpus = generate(&options).expect("corpus");
        let mix = corpus.expected_mix();
        // 128 distinct tokens, 90% invalid: round(115.2) = 115 invalid,
        // spread over three kinds as 39/38/38.
        assert_eq!(mix.get("STATUS_VALID"), Some(&13));
        assert_eq!(mix.get("STATUS_MALFORMED"), Some(&39));
        assert_eq!(mix.get("STATUS_BAD_SIGNATURE"), Some(&38));
        assert_eq!(mix.get("STATUS_UNKNOWN_KEY"), Some(&38));
        assert_eq!(mix.values().sum::<usize>(), 128);
    }

    #[test]
    fn hot_cold_stream_draws_mostly_from_the_hot_set() {
        let options = small("mixed", 3);
        let corpus = generate(&options).expect("corpus");
        assert_eq!(corpus.meta.distinct, 80);
        assert_eq!(corpus.stream.len() % corpus.meta.batch, 0);
        let hot: std::collections::HashSet<&String> =
            corpus.stream.iter().map(|(_, t)| t).collect();
        assert!(hot.len() <= 80);
        // 64 cold draws need about 640 tokens at a 90% hot share.
        assert!(corpus.stream.len() >= 640, "{}", corpus.stream.len());
    }

    #[test]
    fn overload_calls_are_wholly_hot_or_wholly_cold() {
        let mut options = small("overload", 11);
        options.metrics_listen = Some("127.0.0.1:9999".into());
        let corpus = generate(&options).expect("corpus");
        let batch = corpus.meta.batch;
        assert_eq!(batch, 32);
        // 16 hot tokens asked, raised to a batch of 32, and a cold cycle of
        // 96 = 3 calls; a quarter of the calls hot: 3 * 0.25 / 0.75 = 1 hot
        // call, 4 calls in all.
        assert_eq!(corpus.meta.distinct, 32 + 96);
        assert_eq!(corpus.stream.len(), 4 * batch);
        assert_eq!(corpus.meta.hot_calls.len(), 1);
        let calls: Vec<&[(Status, String)]> = corpus.stream.chunks(batch).collect();
        let hot: std::collections::HashSet<&String> = corpus
            .meta
            .hot_calls
            .iter()
            .flat_map(|&c| calls[c].iter().map(|(_, t)| t))
            .collect();
        assert!(hot.len() <= 32, "{}", hot.len());
        let mut cold_seen = std::collections::HashSet::new();
        for (c, call) in calls.iter().enumerate() {
            let tokens: std::collections::HashSet<&String> = call.iter().map(|(_, t)| t).collect();
            assert_eq!(tokens.len(), batch, "call {c} repeats a token");
            if corpus.meta.hot_calls.contains(&c) {
                assert!(tokens.is_subset(&hot));
            } else {
                // Cold calls never share a token with the hot set, nor with
                // each other: the cycle is walked once per stream.
                assert!(tokens.is_disjoint(&hot), "call {c}");
                for t in tokens {
                    assert!(cold_seen.insert(t), "call {c} reuses a cold token");
                }
            }
        }
        assert_eq!(cold_seen.len(), 96);
        // The config serves /metrics where asked and sets no pending bound,
        // so an older jwtd reads it too.
        assert!(
            corpus
                .config
                .contains("metrics_listen = \"127.0.0.1:9999\"")
        );
        assert!(!corpus.config.contains("max_pending_tokens"));

        let dir = std::env::temp_dir().join(format!("jwtd-load-overload-{}", std::process::id()));
        corpus.write(&dir).expect("write");
        let back = Corpus::read(&dir).expect("read");
        assert_eq!(back.meta, corpus.meta);
        let parsed = jwtd::config::Config::from_toml(
            &std::fs::read_to_string(dir.join(files::CONFIG)).expect("config"),
            &dir,
        )
        .expect("jwtd accepts it");
        assert_eq!(
            parsed.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9999")
        );
        let requests = back.requests(batch);
        let marked: Vec<usize> = (0..requests.len()).filter(|&c| requests[c].hot).collect();
        assert_eq!(marked, corpus.meta.hot_calls);
        // At another batch, a request is hot only if all its tokens are.
        let halves = back.requests(batch / 2);
        for (c, r) in halves.iter().enumerate() {
            assert_eq!(r.hot, corpus.meta.hot_calls.contains(&(c / 2)), "half {c}");
        }
        let doubles = back.requests(batch * 2);
        for (c, r) in doubles.iter().enumerate() {
            let both = [2 * c, 2 * c + 1]
                .iter()
                .all(|h| corpus.meta.hot_calls.contains(h));
            assert_eq!(r.hot, both, "double {c}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn other_scenarios_have_no_hot_calls_and_no_metrics() {
        let corpus = generate(&small("mixed", 2)).expect("corpus");
        assert!(corpus.meta.hot_calls.is_empty());
        assert!(corpus.config.contains("metrics_listen = \"\"\n"));
        assert!(corpus.requests(16).iter().all(|r| !r.hot));
        // corpus.json without the new keys still reads (older corpora).
        let json = serde_json::to_value(&corpus.meta).expect("serializes");
        assert!(json.get("hotCalls").is_none() && json.get("metricsListen").is_none());
    }

    #[test]
    fn write_then_read_gives_the_same_requests() {
        let options = small("mixed", 5);
        let corpus = generate(&options).expect("corpus");
        let dir = std::env::temp_dir().join(format!("jwtd-load-corpus-{}", std::process::id()));
        corpus.write(&dir).expect("write");
        let back = Corpus::read(&dir).expect("read");
        assert_eq!(back.stream, corpus.stream);
        assert_eq!(back.meta, corpus.meta);
        let config = std::fs::read_to_string(dir.join(files::CONFIG)).expect("config");
        let parsed = jwtd::config::Config::from_toml(&config, &dir).expect("jwtd accepts it");
        assert_eq!(parsed.cache.memo_entries, 1024);
        let requests = back.requests(16);
        assert_eq!(requests.len(), corpus.stream.len() / 16);
        let first = pb::VerifyRequest::decode(requests[0].body.clone()).expect("decodes");
        assert_eq!(first.tokens.len(), 16);
        assert_eq!(first.tokens[0], corpus.stream[0].1);
        assert_eq!(requests[0].expected[0], corpus.stream[0].0 as i32);
        assert_eq!((first.view, requests[0].view), (0, None), "no view sent");
        let lean = back.requests_in_view(16, Some(View::StatusOnly));
        let lean_first = pb::VerifyRequest::decode(lean[0].body.clone()).expect("decodes");
        assert_eq!(lean_first.view, pb::View::StatusOnly as i32);
        assert_eq!(lean_first.tokens, first.tokens);
        assert_eq!(lean[0].view, Some(View::StatusOnly));
        let ghz = corpus.ghz_data();
        assert_eq!(ghz.as_array().map(Vec::len), Some(requests.len()));
        assert_eq!(ghz[0]["tokens"][0], Value::from(corpus.stream[0].1.clone()));
        std::fs::remove_dir_all(&dir).ok();
    }
}
