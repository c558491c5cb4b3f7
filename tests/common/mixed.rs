//! A small mixed corpus, one synthetic record per family the SIEMs' content tells apart (Entra
//! sign-in and audit, Intune audit, Defender XDR streaming, Office 365, Graph alert), each
//! tagged with `"t"` (its name here) so a test can find it in any output shape (in
//! `event.original` for ECS with `keepOriginal`, in `message` for Elastic integration
//! documents, as is for raw).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `(t, family, category, record)`.
pub const RECORDS: &[(&str, &str, &str, &str)] = &[
    (
        "entra-signin-ok",
        "entra",
        "SignInLogs",
        r#"{"t":"entra-signin-ok","time":"2026-01-15T08:00:01.1234567Z","resourceId":"/tenants/00000000-0000-4000-8000-000000000001/providers/Microsoft.aadiam","operationName":"Sign-in activity","category":"SignInLogs","resultType":"0","callerIpAddress":"198.51.100.7","properties":{"id":"aaaaaaaa-0000-4000-8000-000000000001","userPrincipalName":"alex@contoso.example","ipAddress":"198.51.100.7","status":{"errorCode":0}}}"#,
    ),
    (
        "entra-signin-failed",
        "entra",
        "SignInLogs",
        r#"{"t":"entra-signin-failed","time":"2026-01-15T08:00:02.5Z","resourceId":"/tenants/00000000-0000-4000-8000-000000000001/providers/Microsoft.aadiam","operationName":"Sign-in activity","category":"SignInLogs","resultType":"50126","resultDescription":"Invalid username or password","callerIpAddress":"203.0.113.9","properties":{"id":"aaaaaaaa-0000-4000-8000-000000000002","userPrincipalName":"alex@contoso.example","ipAddress":"203.0.113.9","status":{"errorCode":50126,"failureReason":"Invalid username or password"}}}"#,
    ),
    (
        "entra-audit",
        "entra",
        "AuditLogs",
        r#"{"t":"entra-audit","time":"2026-01-15T08:00:03Z","resourceId":"/tenants/00000000-0000-4000-8000-000000000001/providers/Microsoft.aadiam","operationName":"Add user","category":"AuditLogs","resultType":"Success","properties":{"id":"Directory_1","activityDisplayName":"Add user","loggedByService":"Core Directory","initiatedBy":{"user":{"userPrincipalName":"admin@contoso.example"}},"result":"success"}}"#,
    ),
    (
        "intune-audit",
        "intune",
        "AuditLogs",
        r#"{"t":"intune-audit","time":"2026-01-15T08:00:04Z","resourceId":"/tenants/00000000-0000-4000-8000-000000000001/providers/Microsoft.Intune","operationName":"Delete ManagedDevice","category":"AuditLogs","resultType":"Success","properties":{"AuditEventId":"bbbbbbbb-0000-4000-8000-000000000001","ActivityType":"Delete ManagedDevice","Actor":{"UPN":"admin@contoso.example"}}}"#,
    ),
    (
        "defender-process",
        "defender",
        "AdvancedHunting-DeviceProcessEvents",
        r#"{"t":"defender-process","time":"2026-01-15T08:00:05Z","tenantId":"00000000-0000-4000-8000-000000000001","category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":"2026-01-15T08:00:05Z","DeviceName":"pc01.contoso.example","DeviceId":"cccccccc00000000000000000000000000000001","ActionType":"ProcessCreated","FileName":"powershell.exe","ProcessCommandLine":"powershell -nop","ReportId":1}}"#,
    ),
    (
        "o365-login",
        "o365",
        "AzureActiveDirectoryStsLogon",
        r#"{"t":"o365-login","CreationTime":"2026-01-15T08:00:06","Id":"dddddddd-0000-4000-8000-000000000001","Operation":"UserLoggedIn","OrganizationId":"00000000-0000-4000-8000-000000000001","RecordType":15,"ResultStatus":"Success","UserId":"alex@contoso.example","Workload":"AzureActiveDirectory","ClientIP":"198.51.100.7"}"#,
    ),
    (
        "graph-alert",
        "graph",
        "alert_v2",
        r##"{"t":"graph-alert","@odata.type":"#microsoft.graph.security.alert","id":"da0000000000000000_1","title":"Suspicious PowerShell","severity":"medium","status":"new","createdDateTime":"2026-01-15T08:00:07Z","serviceSource":"microsoftDefenderForEndpoint","detectionSource":"antivirus","evidence":[]}"##,
    ),
];

/// Write `copies` rounds of [`RECORDS`] as NDJSON; returns the file.
pub fn write(dir: &Path, copies: usize) -> PathBuf {
    let p = dir.join("mixed.ndjson");
    let mut text = String::new();
    for _ in 0..copies {
        for (_, _, _, r) in RECORDS {
            text.push_str(r);
            text.push('\n');
        }
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// The tag of a record text.
pub fn tag(record_text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(record_text)
        .ok()
        .and_then(|v| v["t"].as_str().map(str::to_string))
        .unwrap_or_default()
}
