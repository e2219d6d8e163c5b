//! Project Wycheproof's JOSE vectors against the JWS layer and the key-set
//! loader. See tests/data/wycheproof/README.md for the mislabelled cases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests state their expectations by panicking.

use jwtd::jose::SignatureBuf;
use jwtd::keys::{KeySet, Origin};
use jwtd::verify::{Rejection, verify_jws};
use serde_json::{Value, json};

fn load(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/wycheproof/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("vector file is JSON")
}

/// The group's public key when it has one, else its (symmetric) private key.
fn group_keys(group: &Value) -> &Value {
    group.get("public").unwrap_or(&group["private"])
}

fn key_set(keys: &Value) -> Result<KeySet, String> {
    let doc = if keys.get("keys").is_some() {
        keys.clone()
    } else {
        json!({ "keys": [keys] })
    };
    let bytes = serde_json::to_vec(&doc).expect("serializes");
    match KeySet::from_jwks(&bytes, Origin::LocalFile) {
        Ok((set, refused)) if refused.is_empty() => Ok(set),
        Ok((_, refused)) => Err(format!("refused: {refused:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Valid,
    Rejected(String),
}

fn outcome(keys: &Result<KeySet, String>, jws: &Value) -> Outcome {
    let Some(token) = jws.as_str() else {
        return Outcome::Rejected("JSON serialization is not accepted".into());
    };
    match keys {
        Err(e) => Outcome::Rejected(format!("key set refused at load: {e}")),
        Ok(set) => match verify_jws(token, &mut SignatureBuf::new(), set) {
            Ok(_) => Outcome::Valid,
            Err(r) => Outcome::Rejected(format!("{r:?}")),
        },
    }
}

#[test]
fn json_web_signature_vectors() {
    let doc = load("json_web_signature_test.json");
    let mut count = 0;
    let mut valid = 0;
    for group in doc["testGroups"].as_array().expect("groups") {
        let keys = key_set(group_keys(group));
        for case in group["tests"].as_array().expect("tests") {
            let id = case["tcId"].as_u64().expect("tcId");
            let got = outcome(&keys, &case["jws"]);
            let labelled_valid = case["result"] == "valid";
            let expect_valid = match id {
                367 | 370 => true,
                346 | 347 | 350 | 351 | 372 | 373 => false,
                _ => labelled_valid,
            };
            if expect_valid {
                assert_eq!(got, Outcome::Valid, "tcId {id} ({})", case["comment"]);
                valid += 1;
            } else {
                assert!(
                    matches!(got, Outcome::Rejected(_)),
                    "tcId {id} ({}) must be rejected",
                    case["comment"]
                );
            }
            count += 1;
        }
    }
    assert_eq!(count, 401, "every vector ran");
    assert_eq!(valid, 42, "valid cases accepted");
}

#[test]
fn mislabelled_cases_fail_for_the_documented_reasons() {
    let doc = load("json_web_signature_test.json");
    let mut seen = 0;
    for group in doc["testGroups"].as_array().expect("groups") {
        let keys = key_set(group_keys(group));
        for case in group["tests"].as_array().expect("tests") {
            let id = case["tcId"].as_u64().expect("tcId");
            let got = outcome(&keys, &case["jws"]);
            let why = match &got {
                Outcome::Rejected(why) => why.as_str(),
                Outcome::Valid => "",
            };
            match id {
                346 | 350 => assert!(why.contains("KeyAlgorithmMismatch"), "{id}: {why}"),
                347 | 351 => assert!(why.contains("ES521"), "{id}: {why}"),
                372 | 373 => assert!(why.contains("Malformed(Base64"), "{id}: {why}"),
                _ => continue,
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
}

#[test]
fn json_web_key_vectors() {
    let doc = load("json_web_key_test.json");
    let mut count = 0;
    for group in doc["testGroups"].as_array().expect("groups") {
        let keys = key_set(group_keys(group));
        for case in group["tests"].as_array().expect("tests") {
            let id = case["tcId"].as_u64().expect("tcId");
            if case["result"] == "valid" {
                assert!(keys.is_ok(), "tcId {id}: {keys:?}");
                assert_eq!(outcome(&keys, &case["jws"]), Outcome::Valid, "tcId {id}");
            } else {
                // Every case but a tampered signature is about the key set,
                // which must be refused at load.
                if case["comment"] != "rejectsModifiedSignature" {
                    assert!(keys.is_err(), "tcId {id} ({}) loaded", case["comment"]);
                }
                assert!(
                    matches!(outcome(&keys, &case["jws"]), Outcome::Rejected(_)),
                    "tcId {id}"
                );
            }
            count += 1;
        }
    }
    assert_eq!(count, 26);
}

#[test]
fn alg_none_vectors_are_unsupported_not_malformed() {
    let doc = load("json_web_signature_test.json");
    let ps512 = doc["testGroups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| {
            g["tests"]
                .as_array()
                .is_some_and(|t| t.iter().any(|c| c["tcId"] == 341))
        })
        .expect("group with the alg none cases");
    let set = key_set(group_keys(ps512)).expect("key loads");
    for case in ps512["tests"].as_array().expect("tests") {
        if case["comment"] == "algIsNone" {
            let token = case["jws"].as_str().expect("compact");
            assert_eq!(
                verify_jws(token, &mut SignatureBuf::new(), &set).err(),
                Some(Rejection::AlgNone)
            );
        }
    }
}
