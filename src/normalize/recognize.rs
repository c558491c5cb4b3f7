//! Telling what a record is without configuration: Azure diagnostic categories, Defender
//! streaming tables, Office 365 record types and Graph object shapes.

use serde_json::Value;

use super::{Recognized, SourceHint};

/// Entra ID diagnostic categories (`microsoft.aadiam`): the categories of Microsoft Entra
/// diagnostic settings (the "export all Entra logs" list) plus the custom security attribute
/// audit logs, which have their own diagnostic setting.
pub const ENTRA_CATEGORIES: [&str; 16] = [
    "SignInLogs",
    "NonInteractiveUserSignInLogs",
    "ServicePrincipalSignInLogs",
    "ManagedIdentitySignInLogs",
    "ADFSSignInLogs",
    "AuditLogs",
    "ProvisioningLogs",
    "RiskyUsers",
    "UserRiskEvents",
    "RiskyServicePrincipals",
    "ServicePrincipalRiskEvents",
    "MicrosoftGraphActivityLogs",
    "NetworkAccessTrafficLogs",
    "EnrichedOffice365AuditLogs",
    "RemoteNetworkHealthLogs",
    "CustomSecurityAttributeAuditLogs",
];

/// Intune diagnostic categories (`microsoft.intune`).
pub const INTUNE_CATEGORIES: [&str; 4] = ["AuditLogs", "OperationalLogs", "DeviceComplianceOrg", "Devices"];

/// Defender XDR streaming tables (without the `AdvancedHunting-` prefix).
pub const DEFENDER_TABLES: [&str; 21] = [
    "AlertInfo",
    "AlertEvidence",
    "DeviceProcessEvents",
    "DeviceNetworkEvents",
    "DeviceFileEvents",
    "DeviceLogonEvents",
    "DeviceRegistryEvents",
    "DeviceImageLoadEvents",
    "DeviceEvents",
    "EmailEvents",
    "EmailAttachmentInfo",
    "EmailUrlInfo",
    "EmailPostDeliveryEvents",
    "IdentityLogonEvents",
    "IdentityQueryEvents",
    "IdentityDirectoryEvents",
    "CloudAppEvents",
    "UrlClickEvents",
    "DeviceInfo",
    "DeviceNetworkInfo",
    "DeviceFileCertificateInfo",
];

/// The category of a Defender for Endpoint API alert (family `defender`).
pub const MDE_ALERT: &str = "mde_alert";

/// Graph object kinds this module maps.
pub const GRAPH_KINDS: [&str; 9] = [
    "directoryAudit",
    "signIn",
    "provisioning",
    "riskDetection",
    "riskyUser",
    "riskyServicePrincipal",
    "servicePrincipalRiskDetection",
    "alert_v2",
    "incident",
];

/// Office 365 `RecordType` numbers to their names: Microsoft's AuditLogRecordType table
/// ("Office 365 Management Activity API schema"; `Viva Goals` written without its space),
/// plus CopilotInteraction (261, "Copilot schema"), MicrosoftDefenderForIdentityAudit (235)
/// and AadRiskDetection (294).
pub fn o365_record_type(n: i64) -> Option<&'static str> {
    Some(match n {
        1 => "ExchangeAdmin",
        2 => "ExchangeItem",
        3 => "ExchangeItemGroup",
        4 => "SharePoint",
        5 => "SyntheticProbe",
        6 => "SharePointFileOperation",
        7 => "OneDrive",
        8 => "AzureActiveDirectory",
        9 => "AzureActiveDirectoryAccountLogon",
        10 => "DataCenterSecurityCmdlet",
        11 => "ComplianceDLPSharePoint",
        12 => "Sway",
        13 => "ComplianceDLPExchange",
        14 => "SharePointSharingOperation",
        15 => "AzureActiveDirectoryStsLogon",
        16 => "SkypeForBusinessPSTNUsage",
        17 => "SkypeForBusinessUsersBlocked",
        18 => "SecurityComplianceCenterEOPCmdlet",
        19 => "ExchangeAggregatedOperation",
        20 => "PowerBIAudit",
        21 => "CRM",
        22 => "Yammer",
        23 => "SkypeForBusinessCmdlets",
        24 => "Discovery",
        25 => "MicrosoftTeams",
        28 => "ThreatIntelligence",
        29 => "MailSubmission",
        30 => "MicrosoftFlow",
        31 => "AeD",
        32 => "MicrosoftStream",
        33 => "ComplianceDLPSharePointClassification",
        34 => "ThreatFinder",
        35 => "Project",
        36 => "SharePointListOperation",
        37 => "SharePointCommentOperation",
        38 => "DataGovernance",
        39 => "Kaizala",
        40 => "SecurityComplianceAlerts",
        41 => "ThreatIntelligenceUrl",
        42 => "SecurityComplianceInsights",
        43 => "MIPLabel",
        44 => "WorkplaceAnalytics",
        45 => "PowerAppsApp",
        46 => "PowerAppsPlan",
        47 => "ThreatIntelligenceAtpContent",
        48 => "LabelContentExplorer",
        49 => "TeamsHealthcare",
        50 => "ExchangeItemAggregated",
        51 => "HygieneEvent",
        52 => "DataInsightsRestApiAudit",
        53 => "InformationBarrierPolicyApplication",
        54 => "SharePointListItemOperation",
        55 => "SharePointContentTypeOperation",
        56 => "SharePointFieldOperation",
        57 => "MicrosoftTeamsAdmin",
        58 => "HRSignal",
        59 => "MicrosoftTeamsDevice",
        60 => "MicrosoftTeamsAnalytics",
        61 => "InformationWorkerProtection",
        62 => "Campaign",
        63 => "DLPEndpoint",
        64 => "AirInvestigation",
        65 => "Quarantine",
        66 => "MicrosoftForms",
        67 => "ApplicationAudit",
        68 => "ComplianceSupervisionExchange",
        69 => "CustomerKeyServiceEncryption",
        70 => "OfficeNative",
        71 => "MipAutoLabelSharePointItem",
        72 => "MipAutoLabelSharePointPolicyLocation",
        73 => "MicrosoftTeamsShifts",
        75 => "MipAutoLabelExchangeItem",
        76 => "CortanaBriefing",
        78 => "WDATPAlerts",
        82 => "SensitivityLabelPolicyMatch",
        83 => "SensitivityLabelAction",
        84 => "SensitivityLabeledFileAction",
        85 => "AttackSim",
        86 => "AirManualInvestigation",
        87 => "SecurityComplianceRBAC",
        88 => "UserTraining",
        89 => "AirAdminActionInvestigation",
        90 => "MSTIC",
        91 => "PhysicalBadgingSignal",
        93 => "AipDiscover",
        94 => "AipSensitivityLabelAction",
        95 => "AipProtectionAction",
        96 => "AipFileDeleted",
        97 => "AipHeartBeat",
        98 => "MCASAlerts",
        99 => "OnPremisesFileShareScannerDlp",
        100 => "OnPremisesSharePointScannerDlp",
        101 => "ExchangeSearch",
        102 => "SharePointSearch",
        103 => "PrivacyInsights",
        105 => "MyAnalyticsSettings",
        106 => "SecurityComplianceUserChange",
        107 => "ComplianceDLPExchangeClassification",
        109 => "MipExactDataMatch",
        113 => "MS365DCustomDetection",
        147 => "CoreReportingSettings",
        148 => "ComplianceConnector",
        154 => "OMEPortal",
        174 => "DataShareOperation",
        181 => "EduDataLakeDownloadOperation",
        183 => "MicrosoftGraphDataConnectOperation",
        186 => "PowerPagesSite",
        188 => "PlannerPlan",
        189 => "PlannerCopyPlan",
        190 => "PlannerTask",
        191 => "PlannerRoster",
        192 => "PlannerPlanList",
        193 => "PlannerTaskList",
        194 => "PlannerTenantSettings",
        195 => "ProjectForTheWebProject",
        196 => "ProjectForTheWebTask",
        197 => "ProjectForTheWebRoadmap",
        198 => "ProjectForTheWebRoadmapItem",
        199 => "ProjectForTheWebProjectSettings",
        200 => "ProjectForTheWebRoadmapSettings",
        216 => "VivaGoals",
        217 => "MicrosoftGraphDataConnectConsent",
        230 => "TeamsUpdates",
        231 => "PlannerRosterSensitivityLabel",
        235 => "MicrosoftDefenderForIdentityAudit",
        261 => "CopilotInteraction",
        294 => "AadRiskDetection",
        _ => return None,
    })
}

/// The RecordType names Elastic's o365 pipeline writes to `event.code`: its table is
/// Microsoft's up to 181 without 154 (OMEPortal); other types get no `event.code` there.
pub fn elastic_o365_code(n: i64) -> Option<&'static str> {
    if n > 181 || n == 154 || n == 5 {
        return None;
    }
    o365_record_type(n)
}

fn rec(family: &'static str, category: &str) -> Recognized {
    Recognized {
        family,
        category: category.to_string(),
    }
}

/// Tell the family and category of a record. Never fails: what is not recognised is
/// `unknown` (or `<family>` with the category as given when the family is clear).
pub fn recognize(record: &Value, hint: SourceHint<'_>) -> Recognized {
    let Some(obj) = record.as_object() else {
        return rec("unknown", "unknown");
    };
    if let Some(category) = obj.get("category").and_then(Value::as_str) {
        if category.starts_with("AdvancedHunting-") {
            return rec("defender", category);
        }
        if obj.contains_key("time") || obj.contains_key("resourceId") || obj.contains_key("properties") {
            return diagnostic(record, category);
        }
    }
    if obj.contains_key("RecordType") && (obj.contains_key("CreationTime") || obj.contains_key("Workload")) {
        let category = match obj.get("RecordType") {
            Some(Value::Number(n)) => n.as_i64().and_then(o365_record_type),
            Some(Value::String(t)) => t.parse::<i64>().ok().and_then(o365_record_type),
            _ => None,
        };
        return rec("o365", category.unwrap_or("unknown"));
    }
    // The Defender for Endpoint API's alert object (`/api/alerts`): Graph alerts have none of
    // these keys.
    if obj.contains_key("alertCreationTime")
        || obj.contains_key("computerDnsName")
        || (obj.contains_key("machineId") && (obj.contains_key("incidentId") || obj.contains_key("detectionSource")))
    {
        return rec("defender", MDE_ALERT);
    }
    if let Some(kind) = graph_kind(record, hint) {
        return rec("graph", kind);
    }
    if matches!(hint, SourceHint::ManagementActivity(_)) {
        return rec("o365", "unknown");
    }
    rec("unknown", "unknown")
}

fn diagnostic(record: &Value, category: &str) -> Recognized {
    let provider = record
        .get("resourceId")
        .and_then(Value::as_str)
        .map(|r| r.rsplit("/providers/").next().unwrap_or(""))
        .or_else(|| record.get("ResourceProvider").and_then(Value::as_str))
        .unwrap_or("");
    let starts_ci = |prefix: &str| {
        provider.len() >= prefix.len() && provider.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    let intune_provider = starts_ci("microsoft.intune");
    let entra_provider = starts_ci("microsoft.aadiam");
    if category == "AuditLogs" {
        // Both services emit `AuditLogs`; Intune's properties are PascalCase with an Actor.
        let props = record.get("properties");
        let intune_shape = props.is_some_and(|p| {
            p.get("Actor").is_some() || p.get("AuditEventId").is_some() || p.get("ActivityType").is_some()
        });
        let entra_shape = props.is_some_and(|p| {
            p.get("activityDisplayName").is_some()
                || p.get("initiatedBy").is_some()
                || p.get("loggedByService").is_some()
        });
        return if intune_provider || (intune_shape && !entra_provider && !entra_shape) {
            rec("intune", category)
        } else {
            rec("entra", category)
        };
    }
    if INTUNE_CATEGORIES.contains(&category) && !entra_provider {
        return rec("intune", category);
    }
    if ENTRA_CATEGORIES.contains(&category) {
        return rec("entra", category);
    }
    if intune_provider {
        rec("intune", category)
    } else if entra_provider {
        rec("entra", category)
    } else {
        rec("azure", category)
    }
}

fn graph_kind(record: &Value, hint: SourceHint<'_>) -> Option<&'static str> {
    if let SourceHint::Graph(endpoint) = hint {
        let e = endpoint.trim_end_matches('/');
        let last = e.rsplit('/').next().unwrap_or(e);
        let by_endpoint = match last {
            "directoryAudits" => Some("directoryAudit"),
            "signIns" => Some("signIn"),
            "provisioning" => Some("provisioning"),
            "riskDetections" => Some("riskDetection"),
            "riskyUsers" => Some("riskyUser"),
            "riskyServicePrincipals" => Some("riskyServicePrincipal"),
            "servicePrincipalRiskDetections" => Some("servicePrincipalRiskDetection"),
            "alerts_v2" => Some("alert_v2"),
            "incidents" => Some("incident"),
            _ => None,
        };
        if by_endpoint.is_some() {
            return by_endpoint;
        }
    }
    let has = |k: &str| record.get(k).is_some();
    if let Some(t) = record.get("@odata.type").and_then(Value::as_str) {
        match t {
            "#microsoft.graph.security.alert" => return Some("alert_v2"),
            "#microsoft.graph.security.incident" => return Some("incident"),
            "#microsoft.graph.signIn" => return Some("signIn"),
            "#microsoft.graph.directoryAudit" => return Some("directoryAudit"),
            "#microsoft.graph.provisioningObjectSummary" => return Some("provisioning"),
            "#microsoft.graph.riskDetection" => return Some("riskDetection"),
            "#microsoft.graph.riskyUser" => return Some("riskyUser"),
            _ => {}
        }
    }
    if has("activityDisplayName") && (has("initiatedBy") || has("loggedByService") || has("targetResources")) {
        return Some("directoryAudit");
    }
    if has("provisioningAction") || has("provisioningStatusInfo") || (has("jobId") && has("cycleId")) {
        return Some("provisioning");
    }
    if has("riskEventType") {
        return Some(if has("servicePrincipalId") && !has("userId") {
            "servicePrincipalRiskDetection"
        } else {
            "riskDetection"
        });
    }
    if has("riskLastUpdatedDateTime") {
        return Some(
            if has("servicePrincipalType") || (has("appId") && !has("userPrincipalName")) {
                "riskyServicePrincipal"
            } else {
                "riskyUser"
            },
        );
    }
    if has("createdDateTime")
        && (has("signInEventTypes")
            || has("isInteractive")
            || has("riskLevelDuringSignIn")
            || has("conditionalAccessStatus")
            || (has("userPrincipalName") && has("status") && has("appId")))
    {
        return Some("signIn");
    }
    if has("alertWebUrl") || (has("serviceSource") && has("detectionSource")) || (has("detectorId") && has("evidence"))
    {
        return Some("alert_v2");
    }
    if has("incidentWebUrl") || (has("redirectIncidentId") && has("displayName")) {
        return Some("incident");
    }
    None
}
