//! BENCHMARKS.md rows from `jwtd-load run --format json` reports: medians
//! over repeated runs, grouped by scenario and the run's `--label` (`jwtd`,
//! `echo`, `jwtd-half-rate`), so one script reproduces the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::Error;
use crate::scenario::NAMES;

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The median of a report field over `reports`.
fn field(reports: &[Value], pick: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    median(reports.iter().filter_map(pick).collect())
}

fn percentile(report: &Value, p: f64) -> Option<f64> {
    report["latencyDistribution"]
        .as_array()?
        .iter()
        .find(|point| point["percentage"].as_f64() == Some(p))?["latency"]
        .as_f64()
}

fn fmt(value: Option<f64>, unit: &str, digits: usize) -> String {
    value.map_or("—".into(), |v| format!("{v:.digits$}{unit}"))
}

/// The median over `reports` of the `p`th latency percentile, in ms.
fn latency_ms(reports: &[Value], p: f64) -> String {
    fmt(
        field(reports, |r| percentile(r, p)).map(|ns| ns / 1e6),
        " ms",
        2,
    )
}

/// The markdown table of the reports in `files`; with `raw_rs256_us`, each
/// scenario's tokens/sec is also shown against twice criterion's
/// single-core `verify/raw/RS256` rate (the 2-core floor).
pub fn render(files: &[PathBuf], raw_rs256_us: Option<f64>) -> Result<String, Error> {
    let mut groups: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for path in files {
        let report = load(path)?;
        let scenario = report["scenario"].as_str().unwrap_or("?").to_owned();
        let label = report["options"]["label"]
            .as_str()
            .unwrap_or("jwtd")
            .to_owned();
        groups.entry((scenario, label)).or_default().push(report);
    }
    let empty = Vec::new();
    let group = |s: &str, l: &str| groups.get(&(s.to_owned(), l.to_owned())).unwrap_or(&empty);
    let floor = raw_rs256_us.map(|us| 2.0 * 1e6 / us);
    let mut out = String::from(
        "| scenario | tokens/s | calls/s | p50 | p99 | server CPU s per M tokens | server peak RSS | driver CPU per call | echo tokens/s | jwtd / echo | jwtd / 2× raw RS256 | runs | ghz |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for name in NAMES {
        let jwtd = group(name, "jwtd");
        if jwtd.is_empty() {
            continue;
        }
        let tps = field(jwtd, |r| r["tokensPerSec"].as_f64());
        let echo = field(group(name, "echo"), |r| r["tokensPerSec"].as_f64());
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let rss = jwtd
            .iter()
            .filter_map(|r| r["serverPeakRssBytes"].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | not measured here: ghz not installable |",
            fmt(tps, "", 0),
            fmt(field(jwtd, |r| r["rps"].as_f64()), "", 0),
            latency_ms(jwtd, 50.0),
            latency_ms(jwtd, 99.0),
            fmt(
                field(jwtd, |r| r["serverCpuSecondsPerMillionTokens"].as_f64()),
                " s",
                1
            ),
            fmt(rss.map(|b| b / 1048576.0), " MiB", 0),
            fmt(field(jwtd, |r| r["driverCpuUsPerCall"].as_f64()), " µs", 1),
            fmt(echo, "", 0),
            fmt(ratio(tps, echo), "", 2),
            if name.contains("cold") {
                fmt(ratio(tps, floor), "", 2)
            } else {
                "—".into()
            },
            jwtd.len(),
        );
    }
    let half = group("single-cold", "jwtd-half-rate");
    if !half.is_empty() {
        let _ = writeln!(
            out,
            "\nsingle-cold at half its maximum rate ({} calls/s offered, {} runs): p50 {}, p99 {}, p99.9 {}",
            fmt(field(half, |r| r["options"]["rps"].as_f64()), "", 0),
            half.len(),
            latency_ms(half, 50.0),
            latency_ms(half, 99.0),
            latency_ms(half, 99.9),
        );
    }
    if let Some(floor) = floor {
        let _ = writeln!(out, "\n2× raw RS256 floor: {floor:.0} tokens/s");
    }
    Ok(out)
}

fn load(path: &PathBuf) -> Result<Value, Error> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(serde_json::from_slice(&text)?)
}

/// One line about one report: what CI prints per scenario.
pub fn summary(path: &PathBuf) -> Result<String, Error> {
    let r = load(path)?;
    Ok(format!(
        "{}: {} calls, {} tokens, {:.0} tokens/s, p99 {:.2} ms, unexpected {}, statuses {}",
        r["scenario"].as_str().unwrap_or("?"),
        r["count"],
        r["tokens"],
        r["tokensPerSec"].as_f64().unwrap_or(0.0),
        percentile(&r, 99.0).unwrap_or(0.0) / 1e6,
        r["unexpectedTokens"],
        r["tokenStatusDistribution"],
    ))
}

/// Half the median calls/s of the reports in `files`.
pub fn half_rate(files: &[PathBuf]) -> Result<f64, Error> {
    let reports = files.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    field(&reports, |r| r["rps"].as_f64())
        .map(|rps| (rps / 2.0).max(1.0))
        .ok_or_else(|| Error::Corpus("no report with a rate".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
