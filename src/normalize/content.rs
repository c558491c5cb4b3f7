//! The names each SIEM's own content keys on, per record family and category: Splunk
//! sourcetypes (the add-ons' field extractions, CIM mappings and Splunk's detections select
//! events by sourcetype) and Elastic integration data streams (an integration's ingest pipeline
//! runs on the data stream it owns). One table, [`TABLE`]; the lookups are pure functions of
//! what normalization computed (the [`super::Recognized`] family and category) and the
//! destination's format, so a destination never parses a body back to choose.
//!
//! Splunk, `format: raw` (the record as Microsoft wrote it, which is what the add-ons parse):
//! - Entra diagnostic records (Event Hubs): `azure:monitor:aad`, the sourcetype the Splunk
//!   Add-on for Microsoft Cloud Services gives Entra ID logs read from Event Hubs and the one
//!   Splunk's security content (ESCU "Azure Active Directory" data source) searches.
//! - Intune and other Azure diagnostic records: `mscs:azure:eventhub`, what the same add-on's
//!   Event Hubs input gives any other record (no add-on parses Intune's categories).
//! - Defender XDR streaming records (`AdvancedHunting-*`): `ms:defender:eventhub`, the Splunk
//!   Add-on for Microsoft Security's Event Hubs input (one event per element of `records`).
//! - Office 365 Management Activity records: `o365:management:activity` (Splunk Add-on for
//!   Microsoft Office 365).
//! - Graph `signIn` / `directoryAudit` / `riskDetection` objects: `azure:aad:signin`,
//!   `azure:aad:audit`, `azure:aad:risk:detection` (Splunk Add-on for Microsoft Azure, whose
//!   inputs read the same Graph endpoints: its props extract `createdDateTime`, `ipAddress`,
//!   `status.errorCode` at the top level, the Graph shape, not the diagnostic one).
//! - Graph security `alert_v2` / `incident`: `ms365:defender:incident:alerts` /
//!   `ms365:defender:incident` (Splunk Add-on for Microsoft Security).
//! - Defender for Endpoint alerts (the `/api/alerts` shape): `ms:defender:atp:alerts`.
//! - Anything else: `siembridge:json`.
//!
//! Splunk, `format: ecs`: the add-ons' extractions name Microsoft's fields (`properties.*`,
//! `createdDateTime`, `Operation`), which an ECS document does not have; tagging ECS with their
//! sourcetypes would give events that their CIM mappings and time extraction silently get
//! wrong. ECS documents get `siembridge:ecs:<product>` (`entra`, `intune`, `defender`, `o365`;
//! `siembridge:ecs` otherwise), one per product so searches and props can tell them apart. Use
//! `format: raw` where the add-ons' content should apply.
//!
//! Elastic: the data stream of an integration that parses the record as received (the
//! `elasticsearch` destination's `mode: integration`): `azure.signinlogs`, `azure.auditlogs`,
//! `azure.provisioning`, `azure.identity_protection`, `azure.graphactivitylogs` (Elastic's
//! `azure` package), `microsoft_intune.audit` / `microsoft_intune.managed_device` (the
//! `microsoft_intune` package: Intune `AuditLogs` and `Devices`), `azure.eventhub` (the azure
//! package's generic Event Hubs data stream, for other diagnostic records), `m365_defender.event` (streaming records), `m365_defender.alert` /
//! `m365_defender.incident` (Graph security objects), `microsoft_defender_endpoint.log`,
//! `o365.audit`. Graph sign-ins, audits, provisioning and risk objects have no Elastic
//! integration that reads their shape: [`elastic_integration_dataset`] says `None`.

use crate::api::EventFormat;

/// What a row matches in a record's category.
#[derive(Clone, Copy, Debug)]
pub enum Categories {
    /// Any category of the family.
    Any,
    /// One of these (compared without case).
    OneOf(&'static [&'static str]),
}

impl Categories {
    fn matches(self, category: &str) -> bool {
        match self {
            Categories::Any => true,
            Categories::OneOf(list) => list.iter().any(|c| c.eq_ignore_ascii_case(category)),
        }
    }
}

/// One row of [`TABLE`].
#[derive(Clone, Copy, Debug)]
pub struct ContentRow {
    /// [`super::Recognized::family`].
    pub family: &'static str,
    pub categories: Categories,
    /// Splunk sourcetype of the record as received (`format: raw`).
    pub splunk_raw: &'static str,
    /// Splunk sourcetype of the ECS document (`format: ecs`).
    pub splunk_ecs: &'static str,
    /// The Elastic integration data stream (dataset) whose pipeline parses the record as received.
    pub elastic_dataset: Option<&'static str>,
}

const SIGN_INS: &[&str] = &[
    "SignInLogs",
    "NonInteractiveUserSignInLogs",
    "ServicePrincipalSignInLogs",
    "ManagedIdentitySignInLogs",
    "ADFSSignInLogs",
];
const RISK: &[&str] = &[
    "RiskyUsers",
    "UserRiskEvents",
    "RiskyServicePrincipals",
    "ServicePrincipalRiskEvents",
];

const fn row(
    family: &'static str,
    categories: Categories,
    splunk_raw: &'static str,
    splunk_ecs: &'static str,
    elastic_dataset: Option<&'static str>,
) -> ContentRow {
    ContentRow {
        family,
        categories,
        splunk_raw,
        splunk_ecs,
        elastic_dataset,
    }
}

use Categories::{Any, OneOf};

/// The table, first match wins. See the module documentation for the sources of each name.
pub const TABLE: &[ContentRow] = &[
    row(
        "entra",
        OneOf(SIGN_INS),
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.signinlogs"),
    ),
    row(
        "entra",
        OneOf(&["AuditLogs"]),
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.auditlogs"),
    ),
    row(
        "entra",
        OneOf(&["ProvisioningLogs"]),
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.provisioning"),
    ),
    row(
        "entra",
        OneOf(RISK),
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.identity_protection"),
    ),
    row(
        "entra",
        OneOf(&["MicrosoftGraphActivityLogs"]),
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.graphactivitylogs"),
    ),
    row(
        "entra",
        Any,
        "azure:monitor:aad",
        "siembridge:ecs:entra",
        Some("azure.eventhub"),
    ),
    // Elastic's microsoft_intune package parses audit and device records itself
    // (packages/microsoft_intune/data_stream/{audit,managed_device}).
    row(
        "intune",
        OneOf(&["AuditLogs"]),
        "mscs:azure:eventhub",
        "siembridge:ecs:intune",
        Some("microsoft_intune.audit"),
    ),
    row(
        "intune",
        OneOf(&["Devices"]),
        "mscs:azure:eventhub",
        "siembridge:ecs:intune",
        Some("microsoft_intune.managed_device"),
    ),
    row(
        "intune",
        Any,
        "mscs:azure:eventhub",
        "siembridge:ecs:intune",
        Some("azure.eventhub"),
    ),
    // The Defender for Endpoint API's alert object (recognised by shape, family `defender`).
    row(
        "defender",
        OneOf(&[super::MDE_ALERT]),
        "ms:defender:atp:alerts",
        "siembridge:ecs:defender",
        Some("microsoft_defender_endpoint.log"),
    ),
    row(
        "defender",
        Any,
        "ms:defender:eventhub",
        "siembridge:ecs:defender",
        Some("m365_defender.event"),
    ),
    row(
        "o365",
        Any,
        "o365:management:activity",
        "siembridge:ecs:o365",
        Some("o365.audit"),
    ),
    row(
        "graph",
        OneOf(&["signIn"]),
        "azure:aad:signin",
        "siembridge:ecs:entra",
        None,
    ),
    row(
        "graph",
        OneOf(&["directoryAudit"]),
        "azure:aad:audit",
        "siembridge:ecs:entra",
        None,
    ),
    row(
        "graph",
        OneOf(&["riskDetection"]),
        "azure:aad:risk:detection",
        "siembridge:ecs:entra",
        None,
    ),
    row(
        "graph",
        OneOf(&["alert_v2"]),
        "ms365:defender:incident:alerts",
        "siembridge:ecs:defender",
        Some("m365_defender.alert"),
    ),
    row(
        "graph",
        OneOf(&["incident"]),
        "ms365:defender:incident",
        "siembridge:ecs:defender",
        Some("m365_defender.incident"),
    ),
    row("graph", Any, "siembridge:json", "siembridge:ecs:entra", None),
    row(
        "azure",
        Any,
        "mscs:azure:eventhub",
        "siembridge:ecs",
        Some("azure.eventhub"),
    ),
];

/// The row of a family and category, if the table has one.
pub fn lookup(family: &str, category: &str) -> Option<&'static ContentRow> {
    TABLE
        .iter()
        .find(|r| r.family == family && r.categories.matches(category))
}

/// The Splunk sourcetype of a record of `family`/`category` sent in `format`
/// (`siembridge:json` / `siembridge:ecs` when the table has no row).
pub fn splunk_sourcetype(family: &str, category: &str, format: EventFormat) -> &'static str {
    match (lookup(family, category), format) {
        (Some(r), EventFormat::Raw) => r.splunk_raw,
        (Some(r), EventFormat::Ecs) => r.splunk_ecs,
        (None, EventFormat::Raw) => "siembridge:json",
        (None, EventFormat::Ecs) => "siembridge:ecs",
    }
}

/// The data stream dataset of the Elastic integration that parses a record of
/// `family`/`category` as received, if there is one.
pub fn elastic_integration_dataset(family: &str, category: &str) -> Option<&'static str> {
    lookup(family, category).and_then(|r| r.elastic_dataset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{recognize, SourceHint, ENTRA_CATEGORIES, GRAPH_KINDS, INTUNE_CATEGORIES};
    use serde_json::json;
    use EventFormat::{Ecs, Raw};

    /// Every family and category the recognizer knows, with what each format must be tagged.
    #[test]
    fn every_family_has_a_sourcetype_in_both_formats() {
        let mut checked = 0;
        let mut expect = |family: &str, category: &str, raw: &str, ecs: &str| {
            assert_eq!(splunk_sourcetype(family, category, Raw), raw, "{family}/{category} raw");
            assert_eq!(splunk_sourcetype(family, category, Ecs), ecs, "{family}/{category} ecs");
            checked += 1;
        };
        for c in ENTRA_CATEGORIES {
            expect("entra", c, "azure:monitor:aad", "siembridge:ecs:entra");
        }
        for c in INTUNE_CATEGORIES {
            expect("intune", c, "mscs:azure:eventhub", "siembridge:ecs:intune");
        }
        for t in crate::normalize::DEFENDER_TABLES {
            let c = format!("AdvancedHunting-{t}");
            expect("defender", &c, "ms:defender:eventhub", "siembridge:ecs:defender");
        }
        for c in [
            "ExchangeAdmin",
            "SharePointFileOperation",
            "MicrosoftTeams",
            "CopilotInteraction",
            "unknown",
        ] {
            expect("o365", c, "o365:management:activity", "siembridge:ecs:o365");
        }
        // A Defender for Endpoint API alert, recognised by its shape, not as a streaming table.
        let mde = json!({"id": "da00000000000000000_-000000000", "incidentId": 7, "machineId": "0000000000000000000000000000000000000001",
            "alertCreationTime": "2026-01-01T00:00:00Z", "computerDnsName": "pc01.contoso.example", "title": "Suspicious PowerShell"});
        let r = recognize(&mde, SourceHint::Unknown);
        assert_eq!(
            (r.family, r.category.as_ref()),
            ("defender", crate::normalize::MDE_ALERT)
        );
        expect(
            r.family,
            &r.category,
            "ms:defender:atp:alerts",
            "siembridge:ecs:defender",
        );
        assert_eq!(
            elastic_integration_dataset(r.family, &r.category),
            Some("microsoft_defender_endpoint.log")
        );
        for k in GRAPH_KINDS {
            let (raw, ecs) = match k {
                "signIn" => ("azure:aad:signin", "siembridge:ecs:entra"),
                "directoryAudit" => ("azure:aad:audit", "siembridge:ecs:entra"),
                "riskDetection" => ("azure:aad:risk:detection", "siembridge:ecs:entra"),
                "alert_v2" => ("ms365:defender:incident:alerts", "siembridge:ecs:defender"),
                "incident" => ("ms365:defender:incident", "siembridge:ecs:defender"),
                _ => ("siembridge:json", "siembridge:ecs:entra"),
            };
            expect("graph", k, raw, ecs);
        }
        expect("azure", "AppServiceHTTPLogs", "mscs:azure:eventhub", "siembridge:ecs");
        expect("unknown", "unknown", "siembridge:json", "siembridge:ecs");
        println!("sourcetype table: {checked} family/category pairs checked in both formats");
    }

    /// The bug this table fixes: Intune and Entra both emit `AuditLogs`; what tells them apart
    /// is the family recognition made, not the category.
    #[test]
    fn intune_and_entra_audit_logs_get_their_own_sourcetypes() {
        let intune = json!({"time":"2026-01-01T00:00:00Z","category":"AuditLogs","resourceId":"/providers/Microsoft.Intune/x","properties":{"Actor":{}}});
        let entra = json!({"time":"2026-01-01T00:00:00Z","category":"AuditLogs","resourceId":"/tenants/t/providers/Microsoft.aadiam","properties":{"activityDisplayName":"Add user"}});
        let r = recognize(&intune, SourceHint::Diagnostic);
        assert_eq!(splunk_sourcetype(r.family, &r.category, Raw), "mscs:azure:eventhub");
        assert_eq!(splunk_sourcetype(r.family, &r.category, Ecs), "siembridge:ecs:intune");
        let r = recognize(&entra, SourceHint::Diagnostic);
        assert_eq!(splunk_sourcetype(r.family, &r.category, Raw), "azure:monitor:aad");
    }

    #[test]
    fn elastic_integration_datasets() {
        assert_eq!(
            elastic_integration_dataset("entra", "SignInLogs"),
            Some("azure.signinlogs")
        );
        assert_eq!(
            elastic_integration_dataset("entra", "NonInteractiveUserSignInLogs"),
            Some("azure.signinlogs")
        );
        assert_eq!(
            elastic_integration_dataset("entra", "AuditLogs"),
            Some("azure.auditlogs")
        );
        assert_eq!(
            elastic_integration_dataset("entra", "UserRiskEvents"),
            Some("azure.identity_protection")
        );
        assert_eq!(
            elastic_integration_dataset("entra", "NetworkAccessTrafficLogs"),
            Some("azure.eventhub")
        );
        assert_eq!(
            elastic_integration_dataset("intune", "AuditLogs"),
            Some("microsoft_intune.audit")
        );
        assert_eq!(
            elastic_integration_dataset("intune", "Devices"),
            Some("microsoft_intune.managed_device")
        );
        assert_eq!(
            elastic_integration_dataset("intune", "OperationalLogs"),
            Some("azure.eventhub")
        );
        assert_eq!(
            elastic_integration_dataset("defender", "AdvancedHunting-DeviceProcessEvents"),
            Some("m365_defender.event")
        );
        assert_eq!(elastic_integration_dataset("o365", "ExchangeAdmin"), Some("o365.audit"));
        assert_eq!(
            elastic_integration_dataset("graph", "alert_v2"),
            Some("m365_defender.alert")
        );
        assert_eq!(elastic_integration_dataset("graph", "signIn"), None);
        assert_eq!(elastic_integration_dataset("unknown", "unknown"), None);
    }
}
