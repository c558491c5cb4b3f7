//! Realistic Microsoft diagnostic records shared by the benchmarks (synthetic values; the shapes
//! of Entra sign-ins and audit, Intune compliance and Defender advanced hunting exports), and the
//! measurement helpers (CPU time, peak RSS, system-call counts under `strace -c -f`).
#![allow(dead_code)]

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";

pub fn signin(i: usize) -> serde_json::Value {
    let cat = [
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
    ][i % 3];
    serde_json::json!({
        "time": format!("2026-01-15T08:{:02}:{:02}.{:07}Z", i / 60 % 60, i % 60, i % 9_999_999),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
        "operationName": "Sign-in activity", "operationVersion": "1.0", "category": cat,
        "tenantId": TENANT, "resultType": if i.is_multiple_of(7) { "50126" } else { "0" }, "resultSignature": "None",
        "resultDescription": if i.is_multiple_of(7) { "Invalid username or password." } else { "" },
        "durationMs": i % 500, "callerIpAddress": format!("198.51.100.{}", i % 250),
        "correlationId": format!("aaaaaaaa-2222-4222-8222-{i:012}"), "identity": format!("User {}", i % 1000),
        "Level": 4, "location": "FR",
        "properties": {
            "id": format!("aaaaaaaa-3333-4333-8333-{i:012}"),
            "createdDateTime": format!("2026-01-15T08:{:02}:{:02}+00:00", i / 60 % 60, i % 60),
            "userDisplayName": format!("User {}", i % 1000), "userPrincipalName": format!("user{}@contoso.example", i % 1000),
            "userId": format!("cccccccc-0000-4000-8000-{:012}", i % 1000), "appId": "bbbbbbbb-0000-0000-0000-000000000002",
            "appDisplayName": "Microsoft Teams", "ipAddress": format!("198.51.100.{}", i % 250),
            "clientAppUsed": "Mobile Apps and Desktop clients", "isInteractive": i.is_multiple_of(3),
            "status": {"errorCode": if i.is_multiple_of(7) { 50126 } else { 0 }, "failureReason": "Other."},
            "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "Windows10", "browser": "Edge 120.0.0", "isCompliant": false, "isManaged": false, "trustType": ""},
            "location": {"city": "Paris", "state": "Paris", "countryOrRegion": "FR", "geoCoordinates": {"latitude": 48.85, "longitude": 2.35}},
            "conditionalAccessStatus": "notApplied", "riskLevelDuringSignIn": "none", "riskLevelAggregated": "none",
            "riskState": "none", "riskDetail": "none", "authenticationRequirement": "singleFactorAuthentication",
            "tokenIssuerType": "AzureAD", "resourceDisplayName": "Microsoft Graph",
            "resourceId": "00000003-0000-0000-c000-000000000000",
            "authenticationDetails": [{"authenticationMethod": "Password", "succeeded": !i.is_multiple_of(7), "authenticationStepResultDetail": "Correct password"}]
        }
    })
}

pub fn audit(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T09:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60),
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"), "operationName": "Add member to group",
        "operationVersion": "1.0", "category": "AuditLogs", "tenantId": TENANT, "resultSignature": "None",
        "durationMs": 0, "callerIpAddress": "203.0.113.25", "correlationId": format!("dddddddd-2222-4222-8222-{i:012}"), "Level": 4,
        "properties": {
            "id": format!("Directory_{i:08}"), "category": "GroupManagement", "result": "success", "resultReason": "",
            "activityDisplayName": "Add member to group", "activityDateTime": "2026-01-15T09:00:11+00:00",
            "loggedByService": "Core Directory", "operationType": "Assign",
            "initiatedBy": {"user": {"id": "cccccccc-0000-4000-8000-000000000001", "userPrincipalName": "admin@contoso.example", "ipAddress": "203.0.113.25"}},
            "targetResources": [
                {"id": format!("eeeeeeee-0000-4000-8000-{:012}", i % 50), "displayName": "Finance Team", "type": "Group",
                 "modifiedProperties": [{"displayName": "Group.DisplayName", "oldValue": null, "newValue": "\"Finance Team\""}]},
                {"id": format!("cccccccc-0000-4000-8000-{:012}", i % 1000), "userPrincipalName": format!("user{}@contoso.example", i % 1000), "type": "User"}
            ],
            "additionalDetails": [{"key": "User-Agent", "value": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}]
        }
    })
}

pub fn intune(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T11:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60), "tenantId": TENANT,
        "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.Intune"), "operationName": "DeviceComplianceOrg",
        "category": "DeviceComplianceOrg", "resultType": "None", "identity": "",
        "properties": {
            "DeviceId": format!("77777777-0000-4000-8000-{i:012}"), "DeviceName": format!("WS-{}", i % 5000), "DeviceType": "Desktop",
            "OSDescription": "Windows", "OSVersion": "10.0.22631.3007", "OwnerType": "Company", "UPN": format!("user{}@contoso.example", i % 1000),
            "UserName": format!("User {}", i % 1000), "ComplianceState": if i.is_multiple_of(3) { "Noncompliant" } else { "Compliant" },
            "ManagedBy": "Intune", "LastContact": "2026-01-15T11:00:00Z", "SerialNumber": format!("SN{i:08}"),
            "PrimaryUser": "cccccccc-0000-4000-8000-000000000002", "DeviceHealthThreatLevel": "Secured",
            "EncryptionStatusString": "True", "JailBroken": "False", "IMEI": "", "MEID": "", "Model": "Latitude 7440", "Manufacturer": "Dell Inc."
        }
    })
}

pub fn defender(i: usize) -> serde_json::Value {
    serde_json::json!({
        "time": format!("2026-01-15T10:{:02}:{:02}.0000000Z", i / 60 % 60, i % 60), "tenantId": TENANT,
        "operationName": "Publish", "category": "AdvancedHunting-DeviceProcessEvents",
        "_TimeReceivedBySvc": "2026-01-15T09:59:58.0000000Z",
        "properties": {
            "Timestamp": "2026-01-15T09:59:57.5000000Z", "DeviceId": format!("{:040x}", i), "DeviceName": format!("ws-{}.contoso.example", i % 5000),
            "ActionType": "ProcessCreated", "FileName": "cmd.exe", "FolderPath": "C:\\Windows\\System32\\cmd.exe",
            "SHA1": "0123456789abcdef0123456789abcdef01234567", "SHA256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ProcessId": 4000 + i % 1000, "ProcessCommandLine": "cmd.exe /c whoami /all", "AccountDomain": "contoso", "AccountName": format!("user{}", i % 1000),
            "AccountSid": "S-1-5-21-1111111111-2222222222-3333333333-1001", "InitiatingProcessFileName": "explorer.exe",
            "InitiatingProcessCommandLine": "explorer.exe", "InitiatingProcessParentFileName": "userinit.exe",
            "ReportId": i, "MachineGroup": "Workstations", "AppGuardContainerId": ""
        }
    })
}

pub fn record(i: usize) -> serde_json::Value {
    match i % 10 {
        0..=3 => signin(i),
        4 | 5 => audit(i),
        6 | 7 => intune(i),
        _ => defender(i),
    }
}

/// `{"records":[...]}` bodies of `per_body` records each, `total` records in all.
pub fn bodies(total: usize, per_body: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < total {
        let records: Vec<_> = (i..(i + per_body).min(total)).map(record).collect();
        out.push(serde_json::to_string(&serde_json::json!({ "records": records })).expect("json"));
        i += per_body;
    }
    out
}

/// CPU seconds (user + system) of this process, every thread included.
pub fn process_cpu_seconds() -> f64 {
    cpu_of("/proc/self/stat")
}

/// CPU seconds (user + system) of the calling thread.
pub fn thread_cpu_seconds() -> f64 {
    cpu_of("/proc/thread-self/stat")
}

fn cpu_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; after the `)` they are at 11 and 12.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Peak resident set of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Records per CPU second of plain `serde_json` parse into a `Value` + serialize of `bodies`, on
/// the calling thread, and the bytes per CPU second.
pub fn serde_json_baseline(bodies: &[impl AsRef<[u8]>], records: usize) -> (f64, f64) {
    let bytes: usize = bodies.iter().map(|b| b.as_ref().len()).sum();
    let cpu0 = thread_cpu_seconds();
    let t0 = std::time::Instant::now();
    let mut sink = 0usize;
    // Repeat until at least half a second of CPU so the 10 ms tick does not dominate.
    let mut rounds = 0;
    while rounds == 0 || thread_cpu_seconds() - cpu0 < 0.5 {
        for b in bodies {
            let v: serde_json::Value = serde_json::from_slice(b.as_ref()).expect("valid JSON");
            sink += serde_json::to_vec(&v).expect("serializes").len();
        }
        rounds += 1;
        if rounds >= 20 {
            break;
        }
    }
    std::hint::black_box(sink);
    let cpu = (thread_cpu_seconds() - cpu0).max(t0.elapsed().as_secs_f64().min(0.01));
    ((records * rounds) as f64 / cpu, (bytes * rounds) as f64 / cpu)
}

/// What a child run printed: `key=value` pairs on a line starting with `RESULT`.
pub fn parse_result(stdout: &str) -> std::collections::BTreeMap<String, f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("RESULT"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Run this benchmark binary again as a child with `env` set; with `strace`, under
/// `strace -f -c` and return the total system calls it counted (every thread of the child).
/// Returns the child's RESULT pairs and the system-call count (None without strace).
pub fn run_child(env: &[(&str, String)], strace: bool) -> (std::collections::BTreeMap<String, f64>, Option<u64>) {
    let exe = std::env::current_exe().expect("current exe");
    let summary = std::env::temp_dir().join(format!("siembridge-bench-strace-{}", std::process::id()));
    let mut cmd = if strace {
        let mut c = std::process::Command::new("strace");
        c.arg("-f").arg("-c").arg("-o").arg(&summary).arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    cmd.arg("--bench");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot run the child ({e}); strace missing?");
            return (Default::default(), None);
        }
    };
    // A failed child fails the bench (and `cargo test --all-targets`, which runs it as a smoke test).
    assert!(
        out.status.success(),
        "child failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result = parse_result(&String::from_utf8_lossy(&out.stdout));
    let calls = strace
        .then(|| {
            let text = std::fs::read_to_string(&summary).ok()?;
            let _ = std::fs::remove_file(&summary);
            // "100.00    0.123456           1    123456      123 total"
            let total = text.lines().find(|l| l.trim_end().ends_with(" total"))?;
            total.split_whitespace().nth(3)?.parse().ok()
        })
        .flatten();
    (result, calls)
}
