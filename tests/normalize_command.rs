//! `siembridge normalize` as a user runs it: the built binary, records on stdin, one line per
//! record on stdout. Every format is compared line by line with what the collector's own path
//! produces for the same record (the ECS bytes of `normalize_json`, the CEF and LEEF encoders of
//! the syslog destination, the record's bytes for raw), so order and content are both checked;
//! envelopes, arrays and Graph pages are split in order; unreadable records give an error line
//! in their place naming the line, and a non-zero exit; a line far larger than
//! `--max-record-bytes` is skipped without being held in memory.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use siembridge::normalize::cef::{self, CefOptions};
use siembridge::normalize::leef::{self, LeefOptions};
use siembridge::normalize::{normalize_json, normalize_owned, EcsContext, SourceHint};

#[path = "common/mixed.rs"]
mod mixed;

struct Output {
    code: i32,
    lines: Vec<String>,
    stderr: String,
}

fn normalize(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siembridge"))
        .arg("normalize")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("siembridge runs");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        lines: String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn corpus() -> String {
    mixed::RECORDS.iter().map(|(_, _, _, r)| format!("{r}\n")).collect()
}

/// What the collector's path gives for record `text` read from input line `line`.
fn expected(format: &str, text: &str, line: usize, keep_original: bool) -> String {
    let record: Value = serde_json::from_str(text).unwrap();
    let id = format!("stdin/{line}#0");
    let ctx = EcsContext {
        source: SourceHint::Unknown,
        event_id: Some(&id),
        original: keep_original.then_some(text),
    };
    match format {
        "ecs" => String::from_utf8(normalize_json(&record, &ctx).unwrap().json).unwrap(),
        "cef" => cef::encode(&normalize_owned(record, &ctx).unwrap().doc, &CefOptions::default()),
        "leef" => leef::encode(&normalize_owned(record, &ctx).unwrap().doc, &LeefOptions::default()),
        _ => text.to_string(),
    }
}

#[test]
fn every_format_gives_one_line_per_record_in_order_as_the_collector_would_send_it() {
    let input = corpus();
    for format in ["ecs", "cef", "leef", "raw"] {
        for keep in [false, true] {
            let mut args = vec!["--format", format];
            if keep {
                args.push("--keep-original");
            }
            let out = normalize(&args, input.as_bytes());
            assert_eq!(out.code, 0, "{format}: {}", out.stderr);
            let mut same = 0;
            for (i, (tag, _, _, record)) in mixed::RECORDS.iter().enumerate() {
                let want = expected(format, record, i + 1, keep);
                assert_eq!(
                    out.lines.get(i),
                    Some(&want),
                    "{format} keep_original={keep}: line {} ({tag})",
                    i + 1
                );
                same += 1;
            }
            assert_eq!(out.lines.len(), mixed::RECORDS.len());
            println!(
                "normalize --format {format}{}: {} records in, {} lines out, {same} equal to the collector's in order, lost 0",
                if keep { " --keep-original" } else { "" },
                mixed::RECORDS.len(),
                out.lines.len()
            );
        }
    }
    // The shapes are what they claim to be.
    let ecs = normalize(&["--format", "ecs", "--keep-original"], input.as_bytes());
    for (line, (tag, _, _, _)) in ecs.lines.iter().zip(mixed::RECORDS) {
        let doc: Value = serde_json::from_str(line).unwrap();
        assert_eq!(mixed::tag(doc["event"]["original"].as_str().unwrap()), *tag);
        assert!(doc["@timestamp"].is_string(), "{tag}: {line}");
    }
    let leef = normalize(&["--format", "leef"], input.as_bytes());
    assert!(leef.lines.iter().all(|l| l.starts_with("LEEF:2.0|Microsoft|")));
    let cef = normalize(&["--format", "cef"], input.as_bytes());
    assert!(cef.lines.iter().all(|l| l.starts_with("CEF:0|Microsoft|")));
}

#[test]
fn envelopes_arrays_and_graph_pages_are_split_in_order() {
    let r = |i: usize| mixed::RECORDS[i].3;
    let input = format!(
        "{{\"records\":[{},{}]}}\n[{},{}]\n\n{{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#x\",\"value\":[{}]}}\n{}\n",
        r(0),
        r(2),
        r(3),
        r(4),
        r(6),
        r(5)
    );
    let out = normalize(&["--format", "raw"], input.as_bytes());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tags: Vec<String> = out.lines.iter().map(|l| mixed::tag(l)).collect();
    println!(
        "normalize envelopes: 6 records in 4 lines, {} lines out: {tags:?}",
        out.lines.len()
    );
    assert_eq!(
        tags,
        [
            "entra-signin-ok",
            "entra-audit",
            "intune-audit",
            "defender-process",
            "graph-alert",
            "o365-login"
        ]
    );
    // A pretty-printed envelope over several lines is one document.
    let pretty = serde_json::to_string_pretty(&serde_json::json!({
        "records": [serde_json::from_str::<Value>(r(1)).unwrap(), serde_json::from_str::<Value>(r(5)).unwrap()]
    }))
    .unwrap();
    let out = normalize(&["--format", "ecs", "--keep-original"], pretty.as_bytes());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tags: Vec<String> = out
        .lines
        .iter()
        .map(|l| {
            mixed::tag(
                serde_json::from_str::<Value>(l).unwrap()["event"]["original"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(tags, ["entra-signin-failed", "o365-login"]);
}

#[test]
fn unreadable_records_give_an_error_line_in_their_place_and_a_non_zero_exit() {
    let good = |i: usize| mixed::RECORDS[i].3.as_bytes().to_vec();
    let mut input = Vec::new();
    let lines: Vec<Vec<u8>> = vec![
        good(0),                                                        // 1
        b"{\"category\":\"SignInLogs\",".to_vec(),                      // 2: cut short
        good(2),                                                        // 3
        br#"{"n":1e400,"category":"AuditLogs"}"#.to_vec(),              // 4: valid JSON, not normalizable
        b"42".to_vec(),                                                 // 5: not an object
        vec![0xff, 0xfe, b'{', b'}'],                                   // 6: not UTF-8
        format!("{{\"big\":\"{}\"}}", "x".repeat(10_000)).into_bytes(), // 7: over the limit
        good(5),                                                        // 8
    ];
    for l in &lines {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    let out = normalize(&["--format", "ecs", "--max-record-bytes", "4096"], &input);
    println!("normalize errors: {} lines in, {} out:", lines.len(), out.lines.len());
    for l in &out.lines {
        println!("  {}", &l[..l.len().min(160)]);
    }
    assert_ne!(out.code, 0, "a failed record makes the exit non-zero");
    assert!(
        out.stderr.contains("5 of 8 records could not be read"),
        "{}",
        out.stderr
    );
    assert_eq!(out.lines.len(), 8, "one line per input record");
    let docs: Vec<Value> = out.lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let error_at = |i: usize, stage: &str, why: &str| {
        let e = &docs[i]["error"];
        assert_eq!(e["line"], i + 1, "{}", out.lines[i]);
        assert_eq!(e["stage"], stage, "{}", out.lines[i]);
        assert!(e["reason"].as_str().unwrap().contains(why), "{}", out.lines[i]);
    };
    assert!(docs[0]["error"].is_null());
    error_at(1, "decode", "malformed JSON");
    assert!(docs[2]["error"].is_null());
    error_at(3, "normalize", "number out of range");
    error_at(4, "decode", "not a JSON object");
    error_at(5, "decode", "not UTF-8");
    error_at(6, "decode", "10010 bytes is larger than --max-record-bytes (4096)");
    assert!(docs[7]["error"].is_null());
    // Raw passes on what it need not parse, as `format: raw` destinations do.
    let raw = normalize(&["--format", "raw", "--max-record-bytes", "4096"], &input);
    assert!(raw.lines[3].contains("1e400"), "{}", raw.lines[3]);
    assert!(raw.stderr.contains("4 of 8 records"), "{}", raw.stderr);
}

#[test]
fn a_huge_line_is_skipped_without_being_held_in_memory() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siembridge"))
        .args(["normalize", "--format", "raw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut input = child.stdin.take().unwrap();
    const HUGE: usize = 200 * 1024 * 1024;
    let chunk = vec![b'x'; 1024 * 1024];
    input.write_all(b"{\"a\":\"").unwrap();
    for _ in 0..HUGE / chunk.len() {
        input.write_all(&chunk).unwrap();
    }
    input.write_all(b"\"}\n").unwrap();
    input.write_all(mixed::RECORDS[0].3.as_bytes()).unwrap();
    input.write_all(b"\n").unwrap();
    input.flush().unwrap();
    // The child has read all but the pipe's last buffer: its peak memory so far is the answer.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    drop(input);
    let out = child.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    println!(
        "normalize huge line: {} MiB line then one record; {} lines out; peak RSS {} MiB",
        HUGE >> 20,
        lines.len(),
        peak_kib / 1024
    );
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("larger than --max-record-bytes (1048576)"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], mixed::RECORDS[0].3);
    assert_ne!(out.status.code(), Some(0));
    assert!(peak_kib > 0, "peak RSS readable");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB for a 200 MiB line");
}
