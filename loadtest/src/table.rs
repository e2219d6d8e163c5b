//! BENCHMARKS.md rows from `jwtd-load run --format json` reports: medians
//! over repeated runs, grouped by scenario and the run's `--label` (`jwtd`,
//! `echo`, `jwtd-half-rate`, `jwtd-half-rate-nice0`, `echo-half-rate`), so
//! one script reproduces the table. Fixed-rate
//! `overload` reports (any label but `jwtd`, e.g. `jwtd-overload`,
//! `baseline-overload`) get a table of their own, one row per label.
//! Runs labelled `jwtd-view-VIEW` and `echo-view-VIEW` (`measure.sh` with
//! `VIEWS`, issue 14) get a table of their own, one row per scenario and
//! view, each against the FULL row of the same server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::Error;
use crate::scenario::NAMES;
use crate::view::View;

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

/// A scenario's ghz cell: medians of its ghz reports, or a dash.
fn ghz_cell(ghz: &[Value]) -> String {
    if ghz.is_empty() {
        return "—".into();
    }
    format!(
        "{}, {}, {}",
        fmt(field(ghz, |r| r["tokensPerSec"].as_f64()), "", 0),
        fmt(field(ghz, |r| r["rps"].as_f64()), "", 0),
        fmt(field(ghz, |r| r["driverCpuUsPerCall"].as_f64()), " µs", 0),
    )
}

/// The highest `jwtd / raw RS256` a server could reach on this machine if
/// it did nothing but the signature checks and the transport: the raw rate
/// `floor` spends 1/`floor` core-seconds per token on both cores, the echo
/// server and the driver `1/echo` per token on the same two, so a server of
/// both costs serves `1 / (1/floor + 1/echo)` tokens/s, which is
/// `echo / (floor + echo)` of the floor. Issue 14's target 4 (0.90) is out
/// of reach wherever this is below it.
fn ceiling(floor: Option<f64>, echo: Option<f64>) -> Option<f64> {
    let (floor, echo) = (floor?, echo?);
    Some(echo / (floor + echo))
}

/// "N runs): p50 …, p99 …, p99.9 …" of `runs`, medians.
fn tails(runs: &[Value]) -> String {
    format!(
        "{} runs): p50 {}, p99 {}, p99.9 {}",
        runs.len(),
        latency_ms(runs, 50.0),
        latency_ms(runs, 99.0),
        latency_ms(runs, 99.9),
    )
}

/// A line of jwtd's own time per call (`--metrics-url`) over `runs`:
/// medians of the p99 bound, the share within 2 ms and the mean. `lead`
/// opens the line (a list item, or a nested one).
fn own_time(out: &mut String, lead: &str, runs: &[Value]) {
    let admitted = |r: &Value, key: &str| r["serverTime"]["admitted"][key].clone();
    let p99 = field(runs, |r| admitted(r, "p99AtMostSeconds").as_f64());
    if p99.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "{lead} (`jwtd_rpc_duration_seconds`): p99 ≤ {}, {} of calls ≤ 2 ms, mean {}",
        fmt(p99.map(|s| s * 1e3), " ms", 1),
        fmt(
            field(runs, |r| admitted(r, "shareUnder")["0.002"].as_f64()).map(|s| s * 1e2),
            "%",
            2
        ),
        fmt(
            field(runs, |r| admitted(r, "meanSeconds").as_f64()).map(|s| s * 1e3),
            " ms",
            3
        ),
    );
}

/// The markdown table of the reports in `files`. Cold scenarios are shown
/// against the 2-thread raw RS256 rate of a `jwtd-load raw` report among
/// `files` (measured in the same run), else against twice criterion's
/// single-core `verify/raw/RS256` time `raw_rs256_us`. A scenario with
/// `ghz`-labelled reports (`loadtest/ghz_measure.py`) gets its ghz column.
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
    let measured_floor = field(group("raw-rs256", "raw"), |r| r["tokensPerSec"].as_f64());
    let floor = measured_floor.or(raw_rs256_us.map(|us| 2.0 * 1e6 / us));
    let mut out = String::from(
        "| scenario | tokens/s | calls/s | p50 | p99 | server CPU s per M tokens | server peak RSS | driver CPU per call | echo tokens/s | jwtd / echo | jwtd / raw RS256 on 2 threads | ceiling of that ratio here | runs | ghz: tokens/s, calls/s, driver CPU per call |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
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
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
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
            if name.contains("cold") {
                fmt(ceiling(floor, echo), "", 2)
            } else {
                "—".into()
            },
            jwtd.len(),
            ghz_cell(group(name, "ghz")),
        );
    }
    let half = group("single-cold", "jwtd-half-rate");
    if !half.is_empty() {
        let _ = writeln!(
            out,
            "\nsingle-cold at half its maximum rate ({} calls/s offered, {}",
            fmt(field(half, |r| r["options"]["rps"].as_f64()), "", 0),
            tails(half),
        );
        own_time(&mut out, "- jwtd's own time per call", half);
        let nice0 = group("single-cold", "jwtd-half-rate-nice0");
        if !nice0.is_empty() {
            let _ = writeln!(out, "- with `pool_nice = 0` ({}", tails(nice0));
            own_time(&mut out, "  - its own time per call", nice0);
        }
        let echo = group("single-cold", "echo-half-rate");
        if !echo.is_empty() {
            let _ = writeln!(
                out,
                "- the echo server at the same rate, the driver's own floor ({}",
                tails(echo)
            );
        }
    }
    match (measured_floor, floor) {
        (Some(floor), _) => {
            let _ = writeln!(
                out,
                "\nraw RS256 on 2 threads, same run (`jwtd-load raw`, {} runs): {floor:.0} tokens/s",
                group("raw-rs256", "raw").len()
            );
        }
        (None, Some(floor)) => {
            let _ = writeln!(out, "\n2× raw RS256 floor: {floor:.0} tokens/s");
        }
        (None, None) => {}
    }
    let views = views_table(&groups);
    if !views.is_empty() {
        out.push('\n');
        out.push_str(&views);
    }
    let overload: BTreeMap<&String, &Vec<Value>> = groups
        .iter()
        .filter(|((scenario, label), _)| scenario == "overload" && label != "jwtd")
        .map(|((_, label), reports)| (label, reports))
        .collect();
    if !overload.is_empty() {
        out.push('\n');
        out.push_str(&overload_table(&overload));
    }
    Ok(out)
}

/// The views table: per scenario and view (in [`View::ALL`] order), jwtd's
/// and the echo server's tokens/s, and each against its own FULL runs.
/// Empty when no report is labelled `jwtd-view-…`.
fn views_table(groups: &BTreeMap<(String, String), Vec<Value>>) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for name in NAMES {
        let group = |side: &str, view: View| {
            groups
                .get(&(name.to_owned(), format!("{side}-view-{}", view.name())))
                .unwrap_or(&empty)
        };
        if View::ALL.iter().all(|v| group("jwtd", *v).is_empty()) {
            continue;
        }
        if out.is_empty() {
            out.push_str(
                "| scenario | view | tokens/s | p50 | p99 | server CPU s per M tokens | vs FULL | echo tokens/s | echo vs FULL | jwtd / echo | runs |\n\
                 | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            );
        }
        let tps = |reports: &[Value]| field(reports, |r| r["tokensPerSec"].as_f64());
        let full = (
            tps(group("jwtd", View::Full)),
            tps(group("echo", View::Full)),
        );
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        for view in View::ALL {
            let (jwtd, echo) = (group("jwtd", view), group("echo", view));
            if jwtd.is_empty() && echo.is_empty() {
                continue;
            }
            let (j, e) = (tps(jwtd), tps(echo));
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                view.wire().as_str_name(),
                fmt(j, "", 0),
                latency_ms(jwtd, 50.0),
                latency_ms(jwtd, 99.0),
                fmt(
                    field(jwtd, |r| r["serverCpuSecondsPerMillionTokens"].as_f64()),
                    " s",
                    1
                ),
                fmt(ratio(j, full.0), "×", 2),
                fmt(e, "", 0),
                fmt(ratio(e, full.1), "×", 2),
                fmt(ratio(j, e), "", 2),
                jwtd.len(),
            );
        }
    }
    out
}

/// The overload table: one row per label, `jwtd…` labels first.
fn overload_table(groups: &BTreeMap<&String, &Vec<Value>>) -> String {
    let mut out = String::from(
        "| binary | offered calls/s | goodput tokens/s | admitted p50 | admitted p99 | admitted p99.9 | hot p99 | shed share | failed share | shed p50 | shed p99 | shed server time < 1 ms | server peak RSS | runs |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut labels: Vec<&&String> = groups.keys().collect();
    labels.sort_by_key(|l| (!l.starts_with("jwtd"), l.to_string()));
    let mut throttled = Vec::new();
    for label in labels {
        let reports = groups[*label];
        let ns_ms = |pick: &dyn Fn(&Value) -> Option<f64>| {
            fmt(field(reports, pick).map(|ns| ns / 1e6), " ms", 2)
        };
        let share = |pick: &dyn Fn(&Value) -> Option<f64>| {
            fmt(field(reports, pick).map(|s| 100.0 * s), "%", 1)
        };
        let offered = format!(
            "{} ({} asked)",
            fmt(
                field(reports, |r| r["offered"]["sentPerSec"].as_f64()),
                "",
                0
            ),
            fmt(field(reports, |r| r["options"]["rps"].as_f64()), "", 0),
        );
        let rss = reports
            .iter()
            .filter_map(|r| r["serverPeakRssBytes"].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let held: f64 = reports
            .iter()
            .filter_map(|r| r["offered"]["throttledCalls"].as_f64())
            .sum();
        if held > 0.0 {
            throttled.push(format!("{label}: {held:.0} calls"));
        }
        let _ = writeln!(
            out,
            "| {} | {offered} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            label.strip_suffix("-overload").unwrap_or(label),
            fmt(field(reports, |r| r["goodputTokensPerSec"].as_f64()), "", 0),
            ns_ms(&|r| r["admittedLatency"]["p50"].as_f64()),
            ns_ms(&|r| r["admittedLatency"]["p99"].as_f64()),
            ns_ms(&|r| r["admittedLatency"]["p99.9"].as_f64()),
            ns_ms(&|r| r["hotLatency"]["p99"].as_f64()),
            share(&|r| r["shedShare"].as_f64()),
            share(&|r| Some(r["failedCalls"].as_f64()? / r["count"].as_f64()?.max(1.0))),
            ns_ms(&|r| r["shedLatency"]["p50"]
                .as_f64()
                .filter(|_| shed_calls(r) > 0.0)),
            ns_ms(&|r| r["shedLatency"]["p99"]
                .as_f64()
                .filter(|_| shed_calls(r) > 0.0)),
            share(&|r| r["serverTime"]["shed"]["shareUnder"]["0.001"].as_f64()),
            fmt(rss.map(|b| b / 1048576.0), " MiB", 0),
            reports.len(),
        );
    }
    if !throttled.is_empty() {
        let _ = writeln!(
            out,
            "\nThe driver held calls back (in-flight cap full): {}; those rows offered less than asked.",
            throttled.join(", ")
        );
    }
    out
}

fn shed_calls(report: &Value) -> f64 {
    report["shed"]["calls"].as_f64().unwrap_or(0.0)
}

/// Admitted calls per second of a report (all calls for reports written
/// before shedding was counted).
fn admitted_rate(report: &Value) -> Option<f64> {
    let secs = report["total"].as_f64()? / 1e9;
    match report["admitted"]["calls"].as_f64() {
        Some(calls) if secs > 0.0 => Some(calls / secs),
        _ => report["rps"].as_f64(),
    }
}

/// `factor` times the median admitted calls/s of the reports in `files`.
pub fn rate_of(files: &[PathBuf], factor: f64) -> Result<f64, Error> {
    let reports = files.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    field(&reports, admitted_rate)
        .map(|rps| (rps * factor).max(1.0))
        .ok_or_else(|| Error::Corpus("no report with a rate".into()))
}

fn load(path: &PathBuf) -> Result<Value, Error> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(serde_json::from_slice(&text)?)
}

/// One line about one report: what CI prints per scenario.
pub fn summary(path: &PathBuf) -> Result<String, Error> {
    let r = load(path)?;
    let mut line = format!(
        "{}: {} calls, {} tokens, {:.0} tokens/s, p99 {:.2} ms, unexpected {}, statuses {}",
        r["scenario"].as_str().unwrap_or("?"),
        r["count"],
        r["tokens"],
        r["tokensPerSec"].as_f64().unwrap_or(0.0),
        percentile(&r, 99.0).unwrap_or(0.0) / 1e6,
        r["unexpectedTokens"],
        r["tokenStatusDistribution"],
    );
    if r["allowShed"].as_bool() == Some(true) || shed_calls(&r) > 0.0 {
        let _ = write!(
            line,
            ", shed {} calls, failed {}, hot p99 {:.2} ms",
            r["shed"]["calls"],
            r["failedCalls"],
            r["hotLatency"]["p99"].as_f64().unwrap_or(0.0) / 1e6,
        );
    }
    if let Some(e) = r["offered"]["rate"].as_f64() {
        let _ = write!(
            line,
            ", offered {e:.0}/s (sent {:.0}/s, {} held back)",
            r["offered"]["sentPerSec"].as_f64().unwrap_or(0.0),
            r["offered"]["throttledCalls"],
        );
    }
    Ok(line)
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

    fn write(dir: &std::path::Path, name: &str, report: &Value) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, report.to_string()).expect("write");
        path
    }

    fn overload_report(label: &str, shed: u64, failed: u64, admitted_p99_ms: u64) -> Value {
        serde_json::json!({
            "scenario": "overload",
            "options": { "label": label, "rps": 3000.0 },
            "count": 1000,
            "total": 2_000_000_000u64,
            "rps": 500.0,
            "tokensPerSec": 1000.0,
            "latencyDistribution": [],
            "goodputTokensPerSec": 1234.0,
            "admitted": { "calls": 1000 - shed - failed, "tokens": 8 * (1000 - shed - failed) },
            "shed": { "calls": shed, "tokens": 8 * shed },
            "failedCalls": failed,
            "shedShare": shed as f64 / 1000.0,
            "admittedLatency": { "count": 1, "p50": 1_000_000, "p90": 2_000_000, "p99": admitted_p99_ms * 1_000_000, "p99.9": 9_000_000 },
            "hotLatency": { "count": 1, "p50": 100_000, "p90": 100_000, "p99": 300_000, "p99.9": 400_000 },
            "shedLatency": { "count": shed, "p50": 150_000, "p90": 150_000, "p99": 250_000, "p99.9": 300_000 },
            "offered": { "rate": 3000.0, "sentPerSec": 2990.0, "sentCalls": 5980, "throttledCalls": 0, "maxSendLagNs": 0, "peakInFlight": 10, "inFlightCap": 3000 },
            "serverTime": if shed > 0 { serde_json::json!({ "shed": { "shareUnder": { "0.001": 0.97 } } }) } else { Value::Null },
            "serverPeakRssBytes": 50.0 * 1048576.0,
        })
    }

    #[test]
    fn view_rows_compare_each_view_with_full() {
        let dir = std::env::temp_dir().join(format!("jwtd-load-views-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let report = |label: &str, tps: f64| {
            serde_json::json!({
                "scenario": "batch64-hot",
                "options": { "label": label },
                "tokensPerSec": tps,
                "latencyDistribution": [{ "percentage": 50.0, "latency": 2_000_000 }],
                "serverCpuSecondsPerMillionTokens": 4.0,
            })
        };
        let files = vec![
            write(&dir, "a.json", &report("jwtd-view-full", 200_000.0)),
            write(&dir, "b.json", &report("jwtd-view-full", 220_000.0)),
            write(&dir, "c.json", &report("jwtd-view-status-only", 300_000.0)),
            write(&dir, "d.json", &report("echo-view-full", 300_000.0)),
            write(&dir, "e.json", &report("echo-view-status-only", 450_000.0)),
        ];
        let table = render(&files, None).expect("renders");
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| batch64-hot | VIEW_"))
            .collect();
        assert_eq!(
            rows,
            [
                "| batch64-hot | VIEW_FULL | 210000 | 2.00 ms | — | 4.0 s | 1.00× | 300000 | 1.00× | 0.70 | 2 |",
                "| batch64-hot | VIEW_STATUS_ONLY | 300000 | 2.00 ms | — | 4.0 s | 1.43× | 450000 | 1.50× | 0.67 | 1 |",
            ],
            "{table}"
        );
        // No main-table row: these runs are not labelled jwtd.
        assert!(!table.contains("| batch64-hot | 2"), "{table}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn cold_rows_show_the_ratio_to_raw_and_its_ceiling() {
        let dir = std::env::temp_dir().join(format!("jwtd-load-cold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let run = |scenario: &str, label: &str, tps: f64| {
            serde_json::json!({
                "scenario": scenario,
                "options": { "label": label },
                "tokensPerSec": tps,
                "latencyDistribution": [],
            })
        };
        let files = vec![
            write(&dir, "j.json", &run("batch64-cold", "jwtd", 49_000.0)),
            write(&dir, "e.json", &run("batch64-cold", "echo", 450_000.0)),
            write(&dir, "r.json", &run("raw-rs256", "raw", 70_000.0)),
        ];
        let table = render(&files, None).expect("renders");
        let row = table
            .lines()
            .find(|l| l.starts_with("| batch64-cold |"))
            .expect("a batch64-cold row");
        let cells: Vec<&str> = row.split(" | ").collect();
        // jwtd / echo, jwtd / raw, and the ceiling 450k / (70k + 450k).
        assert_eq!(&cells[9..12], ["0.11", "0.70", "0.87"], "{row}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn half_rate_lines_give_the_driver_jwtd_and_the_echo_floor() {
        let dir = std::env::temp_dir().join(format!("jwtd-load-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let run = |label: &str, p99_ms: f64, server: Value| {
            serde_json::json!({
                "scenario": "single-cold",
                "options": { "label": label, "rps": 6000.0 },
                "latencyDistribution": [
                    { "percentage": 50.0, "latency": 400_000.0 },
                    { "percentage": 99.0, "latency": p99_ms * 1e6 },
                    { "percentage": 99.9, "latency": 2.0 * p99_ms * 1e6 },
                ],
                "serverTime": server,
            })
        };
        let own = |p99: f64, share: f64| {
            serde_json::json!({ "admitted": {
                "p99AtMostSeconds": p99, "meanSeconds": 0.0003, "shareUnder": { "0.002": share },
            } })
        };
        let files = vec![
            write(
                &dir,
                "h1.json",
                &run("jwtd-half-rate", 40.0, own(0.002, 0.995)),
            ),
            write(
                &dir,
                "h2.json",
                &run("jwtd-half-rate", 50.0, own(0.0025, 0.985)),
            ),
            write(
                &dir,
                "h3.json",
                &run("jwtd-half-rate", 60.0, own(0.002, 0.991)),
            ),
            write(&dir, "e1.json", &run("echo-half-rate", 12.0, Value::Null)),
            write(
                &dir,
                "n1.json",
                &run("jwtd-half-rate-nice0", 30.0, own(0.002, 0.996)),
            ),
        ];
        let table = render(&files, None).expect("renders");
        assert!(
            table.contains(
                "(6000 calls/s offered, 3 runs): p50 0.40 ms, p99 50.00 ms, p99.9 100.00 ms"
            ),
            "{table}"
        );
        // Medians of jwtd's own histogram: the bound, the 2 ms share, the mean.
        assert!(
            table.contains("p99 ≤ 2.0 ms, 99.10% of calls ≤ 2 ms, mean 0.300 ms"),
            "{table}"
        );
        assert!(
            table
                .contains("driver's own floor (1 runs): p50 0.40 ms, p99 12.00 ms, p99.9 24.00 ms"),
            "{table}"
        );
        // The pool_nice = 0 rounds, with their own time nested under them.
        assert!(
            table.contains(
                "- with `pool_nice = 0` (1 runs): p50 0.40 ms, p99 30.00 ms, p99.9 60.00 ms\n  \
                 - its own time per call (`jwtd_rpc_duration_seconds`): p99 ≤ 2.0 ms, 99.60% of calls ≤ 2 ms"
            ),
            "{table}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn overload_rows_and_rates() {
        let dir = std::env::temp_dir().join(format!("jwtd-load-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = vec![
            write(
                &dir,
                "a.json",
                &overload_report("jwtd-overload", 600, 0, 20),
            ),
            write(
                &dir,
                "b.json",
                &overload_report("jwtd-overload", 400, 0, 40),
            ),
            write(
                &dir,
                "c.json",
                &overload_report("baseline-overload", 0, 250, 900),
            ),
        ];
        let table = render(&files, None).expect("renders");
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| jwtd |") || l.starts_with("| baseline |"))
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        // jwtd first; medians of its two runs (p99 30 ms, shed 50%).
        assert_eq!(
            rows[0],
            "| jwtd | 2990 (3000 asked) | 1234 | 1.00 ms | 30.00 ms | 9.00 ms | 0.30 ms | 50.0% | 0.0% | 0.15 ms | 0.25 ms | 97.0% | 50 MiB | 2 |"
        );
        // The baseline sheds nothing: no shed latency, no server shed time.
        assert_eq!(
            rows[1],
            "| baseline | 2990 (3000 asked) | 1234 | 1.00 ms | 900.00 ms | 9.00 ms | 0.30 ms | 0.0% | 25.0% | — | — | — | 50 MiB | 1 |"
        );
        assert!(!table.contains("held calls back"));

        // 3× the admitted rate: (1000 - 600) / 2 s and (1000 - 400) / 2 s,
        // median 250 calls/s, times 3.
        assert_eq!(rate_of(&files[..2], 3.0).expect("rate"), 750.0);
        // Reports without admitted counts fall back to rps.
        let old = write(
            &dir,
            "d.json",
            &serde_json::json!({ "total": 1_000_000_000u64, "rps": 80.0 }),
        );
        assert_eq!(rate_of(&[old], 0.5).expect("rate"), 40.0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
