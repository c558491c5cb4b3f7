#!/usr/bin/env python3
"""Writes the synthetic input fixtures of tests/normalize.rs (run from the repo root).

Records follow Microsoft's published schemas (Entra sign-in/audit/provisioning/risk logs,
Intune diagnostic logs, Defender Advanced Hunting tables, O365 Management Activity schema,
Graph resources). All identifiers are synthetic: documentation IP ranges, contoso.example.
Expected outputs are produced by `SIEMBRIDGE_BLESS=1 cargo test --test normalize` and
reviewed by hand.
"""
import copy, json, os

T = "11111111-2222-3333-4444-555555555555"
ROOT = "tests/normalize/fixtures"
U1, U2 = "alex@contoso.example", "sam@contoso.example"
OID1, OID2 = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"
DEV = "0123456789abcdef0123456789abcdef01234567"


def write(family, category, case, record, hint=None, raw=None):
    d = os.path.join(ROOT, family, category)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, case + ".input.json"), "w") as f:
        if raw is not None:
            f.write(raw)
        else:
            json.dump(record, f, indent=1, ensure_ascii=False)
            f.write("\n")
    if hint:
        with open(os.path.join(d, case + ".hint"), "w") as f:
            f.write(hint + "\n")


def merge(base, **changes):
    r = copy.deepcopy(base)
    for k, v in changes.items():
        if k == "properties" and isinstance(v, dict) and isinstance(r.get("properties"), dict):
            r["properties"].update(v)
        else:
            r[k] = v
    return r


def drop(rec, *path):
    r = copy.deepcopy(rec)
    cur = r
    for p in path[:-1]:
        cur = cur[p]
    cur.pop(path[-1], None)
    return r


def diag(category, provider, props, op, t="2025-01-01T10:00:05.1234567Z", **extra):
    r = {"time": t, "resourceId": f"/tenants/{T}/providers/{provider}", "operationName": op,
         "operationVersion": "1.0", "category": category, "tenantId": T}
    r.update(extra)
    r["properties"] = props
    return r


# ---------------------------------------------------------------- Entra
LOC = {"city": "Paris", "state": "Ile-de-France", "countryOrRegion": "FR",
       "geoCoordinates": {"latitude": 48.8566, "longitude": 2.3522}}
signin_props = {
    "id": "bbbbbbbb-1111-4111-8111-000000000001", "createdDateTime": "2025-01-01T10:00:05.1234567+00:00",
    "userPrincipalName": U1, "userId": OID1, "userDisplayName": "Alex Example",
    "appId": "cccccccc-0000-0000-0000-000000000001", "appDisplayName": "Office 365 Exchange Online",
    "ipAddress": "198.51.100.7", "clientAppUsed": "Browser", "isInteractive": True,
    "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "conditionalAccessStatus": "success",
    "authenticationRequirement": "multiFactorAuthentication", "riskLevelDuringSignIn": "none",
    "riskState": "none", "autonomousSystemNumber": 64500,
    "deviceDetail": {"deviceId": "dddddddd-0000-4000-8000-000000000001", "operatingSystem": "Windows10", "browser": "Edge 120.0.0"},
    "location": LOC, "status": {"errorCode": 0},
}
for cat, interactive in [("SignInLogs", True), ("NonInteractiveUserSignInLogs", False), ("ADFSSignInLogs", True)]:
    p = dict(signin_props, isInteractive=interactive)
    base = diag(cat, "Microsoft.aadiam", p, "Sign-in activity", resultType="0", resultSignature="None",
                durationMs=0, callerIpAddress="198.51.100.7", correlationId="eeeeeeee-0000-4000-8000-000000000001",
                identity="Alex Example", Level=4, location="FR")
    write("entra", cat, "typical", base)
    fail = merge(base, resultType="50126", resultDescription="Invalid username or password.",
                 properties={"status": {"errorCode": 50126, "failureReason": "Invalid username or password."},
                             "riskLevelDuringSignIn": "medium"})
    write("entra", cat, "failed-password", fail)
    odd = merge(base, resultType=0, durationMs="16", callerIpAddress="[2001:db8::5]:443", Level="4",
                properties={"ipAddress": None, "location": "FR", "deviceDetail": "n/a", "status": "oops",
                            "autonomousSystemNumber": "64501"})
    write("entra", cat, "odd-types-with-original", odd)

for cat, op in [("ServicePrincipalSignInLogs", "Sign-in activity"), ("ManagedIdentitySignInLogs", "Sign-in activity")]:
    p = {"id": "bbbbbbbb-2222-4222-8222-000000000001", "createdDateTime": "2025-01-01T11:00:00Z",
         "servicePrincipalName": "backup-automation", "servicePrincipalId": "ffffffff-0000-4000-8000-000000000001",
         "appId": "cccccccc-0000-0000-0000-000000000002", "resourceDisplayName": "Microsoft Graph",
         "ipAddress": "203.0.113.20", "location": {"city": "Amsterdam", "countryOrRegion": "NL"},
         "status": {"errorCode": 0}, "resourceTenantId": T}
    base = diag(cat, "Microsoft.aadiam", p, op, t="2025-01-01T11:00:00.0000000Z", resultType="0", durationMs=12,
                correlationId="eeeeeeee-0000-4000-8000-000000000002")
    write("entra", cat, "typical", base)
    write("entra", cat, "failed-secret", merge(base, resultType="7000215", resultDescription="Invalid client secret provided.",
                                               properties={"status": {"errorCode": 7000215, "failureReason": "Invalid client secret provided."}}))
    write("entra", cat, "no-properties", drop(merge(base, durationMs=None, resultType=None), "properties"))

audit_props = {
    "id": "Directory_aaaaaaaa-1111-4111-8111-000000000010", "category": "UserManagement",
    "correlationId": "eeeeeeee-0000-4000-8000-000000000003", "result": "success", "resultReason": "",
    "activityDisplayName": "Update user", "activityDateTime": "2025-01-01T12:00:00.1234567+00:00",
    "loggedByService": "Core Directory", "operationType": "Update",
    "initiatedBy": {"user": {"id": OID1, "displayName": None, "userPrincipalName": U1, "ipAddress": "198.51.100.8"}},
    "targetResources": [{"id": OID2, "displayName": "Sam Example", "type": "User", "userPrincipalName": U2,
                         "modifiedProperties": [{"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"}]}],
    "additionalDetails": [{"key": "UserType", "value": "Member"}],
}
base = diag("AuditLogs", "Microsoft.aadiam", audit_props, "Update user", t="2025-01-01T12:00:00.1234567Z",
            resultSignature="None", durationMs=0, callerIpAddress="198.51.100.8",
            correlationId="eeeeeeee-0000-4000-8000-000000000003", Level=4)
write("entra", "AuditLogs", "update-user", base)
write("entra", "AuditLogs", "add-member-to-group-by-app", merge(base, operationName="Add member to group", properties={
    "activityDisplayName": "Add member to group", "operationType": "Assign", "category": "GroupManagement",
    "initiatedBy": {"app": {"appId": "cccccccc-0000-0000-0000-000000000003", "displayName": "HR Sync",
                            "servicePrincipalId": "ffffffff-0000-4000-8000-000000000002", "servicePrincipalName": None}},
    "targetResources": [{"id": OID2, "displayName": None, "type": "User", "userPrincipalName": U2},
                        {"id": "99999999-0000-4000-8000-000000000001", "displayName": "Finance", "type": "Group"}]}))
write("entra", "AuditLogs", "failure-policy-odd-types", merge(base, operationName="Update conditional access policy", callerIpAddress=None, properties={
    "activityDisplayName": "Update conditional access policy", "operationType": "Update", "result": "failure",
    "resultReason": "Policy is locked", "category": "Policy", "initiatedBy": "system",
    "targetResources": [{"id": "88888888-0000-4000-8000-000000000001", "displayName": "Require MFA", "type": "Policy"}]}))

prov_props = {
    "id": "33333333-0000-4000-8000-000000000001", "activityDateTime": "2025-01-01T13:00:00Z",
    "jobId": "scim.11111111", "cycleId": "cycle-1", "changeId": "change-1", "provisioningAction": "create",
    "provisioningStatusInfo": {"status": "success"},
    "servicePrincipal": {"id": "ffffffff-0000-4000-8000-000000000003", "displayName": "Contoso HR SCIM"},
    "sourceSystem": {"displayName": "Azure Active Directory"}, "targetSystem": {"displayName": "Contoso HR"},
    "sourceIdentity": {"id": OID2, "displayName": "Sam Example", "identityType": "User"},
    "targetIdentity": {"id": "hr-0042", "displayName": U2, "identityType": "User"},
    "initiatedBy": {"displayName": "Azure AD Provisioning Service"},
}
base = diag("ProvisioningLogs", "Microsoft.aadiam", prov_props, "Provisioning activity", t="2025-01-01T13:00:00.0000000Z", durationMs=120, resultType="Success")
write("entra", "ProvisioningLogs", "create-user", base)
write("entra", "ProvisioningLogs", "failure", merge(base, resultType="Failure", properties={"provisioningAction": "update", "provisioningStatusInfo": {"status": "failure", "errorInformation": {"errorCode": "SchemaAttributeMissing", "reason": "Attribute mail is missing"}}}))
write("entra", "ProvisioningLogs", "skipped-group-odd", merge(base, durationMs="x", resultType="Skipped", properties={"provisioningAction": "other", "provisioningStatusInfo": {"status": "skipped"}, "targetIdentity": {"id": "grp-1", "displayName": "Finance", "identityType": "Group"}, "sourceIdentity": None}))

risky_user = {"id": OID1, "userPrincipalName": U1, "userDisplayName": "Alex Example", "riskLevel": "high",
              "riskState": "atRisk", "riskDetail": "none", "riskLastUpdatedDateTime": "2025-01-01T14:00:00Z",
              "isDeleted": False, "isProcessing": False}
base = diag("RiskyUsers", "Microsoft.aadiam", risky_user, "Risky user", t="2025-01-01T14:00:00.0000000Z")
write("entra", "RiskyUsers", "high", base)
write("entra", "RiskyUsers", "remediated", merge(base, properties={"riskLevel": "none", "riskState": "remediated", "riskDetail": "userPerformedSecuredPasswordChange"}))
write("entra", "RiskyUsers", "hidden-odd", merge(base, time="not a time", properties={"riskLevel": "hidden", "riskLastUpdatedDateTime": "2025-01-01T14:00:00", "isDeleted": "false"}))

risk_event = {"id": "44444444-0000-4000-8000-000000000001", "requestId": "r-1", "correlationId": "c-1",
              "riskEventType": "unfamiliarFeatures", "riskState": "atRisk", "riskLevel": "medium", "riskDetail": "none",
              "source": "IdentityProtection", "detectionTimingType": "realtime", "activity": "signin",
              "ipAddress": "203.0.113.30", "location": LOC, "activityDateTime": "2025-01-01T14:59:00Z",
              "detectedDateTime": "2025-01-01T15:00:00Z", "lastUpdatedDateTime": "2025-01-01T15:01:00Z",
              "userId": OID1, "userDisplayName": "Alex Example", "userPrincipalName": U1,
              "additionalInfo": "[{\"Key\":\"userAgent\",\"Value\":\"curl/8.0\"}]"}
base = diag("UserRiskEvents", "Microsoft.aadiam", risk_event, "User Risk Detection", t="2025-01-01T15:00:00.0000000Z")
write("entra", "UserRiskEvents", "unfamiliar-features", base)
write("entra", "UserRiskEvents", "leaked-credentials-offline", merge(base, properties={"riskEventType": "leakedCredentials", "riskLevel": "high", "detectionTimingType": "offline", "ipAddress": None, "location": None}))
write("entra", "UserRiskEvents", "ipv6-odd-geo", merge(base, properties={"ipAddress": "2001:db8::30", "location": {"city": "Nowhere", "geoCoordinates": {"latitude": "91", "longitude": 2}}, "riskLevel": 3}))

risky_sp = {"id": "ffffffff-0000-4000-8000-000000000004", "appId": "cccccccc-0000-0000-0000-000000000004",
            "displayName": "legacy-daemon", "servicePrincipalType": "Application", "riskLevel": "high",
            "riskState": "atRisk", "riskDetail": "none", "riskLastUpdatedDateTime": "2025-01-01T16:00:00Z",
            "isEnabled": True, "isProcessing": False}
base = diag("RiskyServicePrincipals", "Microsoft.aadiam", risky_sp, "Risky service principal", t="2025-01-01T16:00:00.0000000Z")
write("entra", "RiskyServicePrincipals", "high", base)
write("entra", "RiskyServicePrincipals", "dismissed", merge(base, properties={"riskState": "dismissed", "riskLevel": "none", "riskDetail": "adminDismissedAllRiskForServicePrincipal"}))
write("entra", "RiskyServicePrincipals", "odd-types", merge(base, properties={"riskLevel": ["high"], "displayName": 42}))

sp_risk = {"id": "55555555-0000-4000-8000-000000000001", "appId": "cccccccc-0000-0000-0000-000000000004",
           "servicePrincipalId": "ffffffff-0000-4000-8000-000000000004", "servicePrincipalDisplayName": "legacy-daemon",
           "riskEventType": "investigationsThreatIntelligence", "riskState": "atRisk", "riskLevel": "high",
           "riskDetail": "none", "source": "IdentityProtection", "detectionTimingType": "offline", "activity": "servicePrincipal",
           "ipAddresses": ["203.0.113.40", "203.0.113.41"], "activityDateTime": "2025-01-01T16:30:00Z",
           "detectedDateTime": "2025-01-01T16:35:00Z"}
base = diag("ServicePrincipalRiskEvents", "Microsoft.aadiam", sp_risk, "Service principal risk detection", t="2025-01-01T16:35:00.0000000Z")
write("entra", "ServicePrincipalRiskEvents", "threat-intel", base)
write("entra", "ServicePrincipalRiskEvents", "suspicious-credentials", merge(base, properties={"riskEventType": "suspiciousAPITraffic", "riskLevel": "low", "ipAddresses": []}))
write("entra", "ServicePrincipalRiskEvents", "ips-odd", merge(base, properties={"ipAddresses": ["203.0.113.40:8443", 7, "not-an-ip"], "riskLevel": None}))

gal = {"timeGenerated": "2025-01-01T17:00:00Z", "location": "westeurope", "requestId": "66666666-0000-4000-8000-000000000001",
       "operationId": "op-1", "clientRequestId": "77777777-0000-4000-8000-000000000001", "apiVersion": "v1.0",
       "requestMethod": "GET", "responseStatusCode": 200, "tenantId": T, "durationMs": 130, "responseSizeBytes": 2048,
       "requestUri": "https://graph.microsoft.com/v1.0/users?$top=5", "userAgent": "python-requests/2.31",
       "roles": "User.Read.All", "identityProvider": "https://sts.windows.net/" + T + "/",
       "appId": "cccccccc-0000-0000-0000-000000000005", "ipAddress": "203.0.113.50", "userId": OID1,
       "servicePrincipalId": None, "signInActivityId": "sia-1"}
base = diag("MicrosoftGraphActivityLogs", "Microsoft.aadiam", gal, "Microsoft Graph Activity", t="2025-01-01T17:00:00.0000000Z", Level=4)
write("entra", "MicrosoftGraphActivityLogs", "list-users", base)
write("entra", "MicrosoftGraphActivityLogs", "forbidden", merge(base, properties={"requestMethod": "DELETE", "responseStatusCode": 403, "requestUri": "https://graph.microsoft.com/beta/groups/99999999-0000-4000-8000-000000000001"}))
write("entra", "MicrosoftGraphActivityLogs", "string-numbers-app-only", merge(base, properties={"responseStatusCode": "201", "durationMs": "45", "userId": None, "servicePrincipalId": "ffffffff-0000-4000-8000-000000000005", "requestMethod": "POST", "requestUri": "https://graph.microsoft.com:443/v1.0/me/sendMail"}))

nat = {"createdDateTime": "2025-01-01T18:00:00Z", "transactionId": "tx-1", "connectionId": "conn-1", "sessionId": "s-1",
       "sourceIp": "192.0.2.10", "sourcePort": 50123, "destinationIp": "198.51.100.80", "destinationPort": 443,
       "destinationFQDN": "app.contoso.example", "transportProtocol": "TCP", "networkProtocol": "IPv4",
       "trafficType": "internet", "action": "Allow", "policyId": "pol-1", "policyName": "Baseline",
       "policyRuleId": "rule-1", "ruleName": "Allow SaaS", "sentBytes": 1200, "receivedBytes": 54000,
       "userId": OID1, "userPrincipalName": U1, "deviceId": "dddddddd-0000-4000-8000-000000000001",
       "deviceOperatingSystem": "Windows 11", "deviceOperatingSystemVersion": "10.0.22631"}
base = diag("NetworkAccessTrafficLogs", "Microsoft.aadiam", nat, "NetworkAccessTrafficLogs", t="2025-01-01T18:00:00.0000000Z")
write("entra", "NetworkAccessTrafficLogs", "allowed", base)
write("entra", "NetworkAccessTrafficLogs", "blocked", merge(base, properties={"action": "Block", "ruleName": "Block gambling", "destinationFQDN": "bet.example", "receivedBytes": 0}))
pascal = {"TimeGenerated": "2025-01-01T18:05:00Z", "TransactionId": "tx-3", "SourceIp": "192.0.2.11", "SourcePort": "50124",
          "DestinationIp": "2001:db8::80", "DestinationPort": "443", "DestinationFqdn": "files.contoso.example",
          "TransportProtocol": "Udp", "Action": "allow", "UserPrincipalName": U2, "SentBytes": "10"}
write("entra", "NetworkAccessTrafficLogs", "pascal-case-strings", diag("NetworkAccessTrafficLogs", "Microsoft.aadiam", pascal, "NetworkAccessTrafficLogs", t="2025-01-01T18:05:00.0000000Z"))

# ---------------------------------------------------------------- Entra: categories added for issue 15
# Synthetic values in the documentation ranges: tenant 00000000-0000-4000-8000-..., example.com /
# example.org, 192.0.2.0/24, 2001:db8::/32. Field names from Microsoft's published schemas
# (Entra audit log schema, Global Secure Access enriched Microsoft 365 and remote network health logs).
TN = "00000000-0000-4000-8000-000000000000"
UN = "kim@example.com"
ON = "00000000-0000-4000-8000-00000000a001"

csa = {"id": "CSA_00000000-0000-4000-8000-00000000c001", "category": "CustomSecurityAttributeManagement",
       "correlationId": "00000000-0000-4000-8000-00000000c002", "result": "success", "resultReason": "",
       "activityDisplayName": "Update attribute values assigned to a user", "activityDateTime": "2025-02-01T08:00:00Z",
       "loggedByService": "Core Directory", "operationType": "Update",
       "initiatedBy": {"user": {"id": ON, "displayName": "Kim Example", "userPrincipalName": UN, "ipAddress": "192.0.2.21"}},
       "targetResources": [{"id": "00000000-0000-4000-8000-00000000a002", "displayName": "Lee Example", "type": "User",
                            "userPrincipalName": "lee@example.com",
                            "modifiedProperties": [{"displayName": "Engineering_Project", "oldValue": "[]", "newValue": "[\"Alpine\"]"}]}]}
base = {"time": "2025-02-01T08:00:00.0000000Z", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam",
        "operationName": "Update attribute values assigned to a user", "operationVersion": "1.0",
        "category": "CustomSecurityAttributeAuditLogs", "tenantId": TN, "resultSignature": "None", "durationMs": 0,
        "callerIpAddress": "192.0.2.21", "correlationId": "00000000-0000-4000-8000-00000000c002", "Level": 4,
        "properties": csa}
write("entra", "CustomSecurityAttributeAuditLogs", "update-user-attribute", base)
write("entra", "CustomSecurityAttributeAuditLogs", "add-attribute-definition-failure", merge(base, operationName="Add custom security attribute definition in an attribute set", properties={
    "activityDisplayName": "Add custom security attribute definition in an attribute set", "operationType": "Add",
    "result": "Failure", "resultReason": "Attribute already exists",
    "targetResources": [{"id": "Engineering_Project", "displayName": "Project", "type": "CustomSecurityAttributeDefinition"}]}))
write("entra", "CustomSecurityAttributeAuditLogs", "app-initiator-ipv6", merge(base, callerIpAddress="2001:db8::21", properties={
    "result": "timeout",
    "initiatedBy": {"app": {"appId": "00000000-0000-4000-8000-00000000a003", "displayName": "Attribute sync",
                            "servicePrincipalId": "00000000-0000-4000-8000-00000000a004", "servicePrincipalName": None}}}))

eo = {"createdDateTime": "2025-02-01T09:00:00Z", "id": "00000000-0000-4000-8000-00000000e001", "recordType": "SharePointFileOperation",
      "operation": "FileDownloaded", "organizationId": TN, "userType": "Regular", "userId": UN, "workload": "SharePoint",
      "objectId": "https://example.sharepoint.com/sites/eng/Shared Documents/plan.docx",
      "sourceIp": "192.0.2.31", "sourcePort": 51000, "destinationIp": "192.0.2.200", "destinationPort": 443,
      "deviceId": "00000000-0000-4000-8000-00000000d001", "deviceOperatingSystem": "Windows 11",
      "deviceOperatingSystemVersion": "10.0.22631", "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "tenantId": TN}
base = {"time": "2025-02-01T09:00:00.0000000Z", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam",
        "operationName": "EnrichedOffice365AuditLogs", "category": "EnrichedOffice365AuditLogs", "tenantId": TN, "properties": eo}
write("entra", "EnrichedOffice365AuditLogs", "sharepoint-download", base)
write("entra", "EnrichedOffice365AuditLogs", "exchange-mailitems-ipv6", merge(base, properties={"recordType": "ExchangeItemAggregated", "operation": "MailItemsAccessed", "workload": "Exchange", "sourceIp": "2001:db8::31", "sourcePort": None}))
pascal_eo = {"TimeGenerated": "2025-02-01T09:05:00Z", "Id": "00000000-0000-4000-8000-00000000e002", "RecordType": 25, "Operation": "MessageSent",
             "Workload": "MicrosoftTeams", "UserId": "svc-bot", "SourceIp": "192.0.2.32", "SourcePort": "51001", "DeviceOperatingSystem": " ",
             "OrganizationId": TN}
write("entra", "EnrichedOffice365AuditLogs", "pascal-case-non-upn-user", {"time": "2025-02-01T09:05:00.0000000Z", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam", "category": "EnrichedOffice365AuditLogs", "properties": pascal_eo})

rnh = {"createdDateTime": "2025-02-01T10:00:00Z", "remoteNetworkId": "00000000-0000-4000-8000-00000000f001",
       "status": "bgpConnected", "description": "BGP session established", "sourceIp": "192.0.2.41", "destinationIp": "192.0.2.242",
       "bgpRoutesAdvertisedCount": 12, "sentBytes": 4096, "receivedBytes": 8192, "tenantId": TN}
base = {"time": "2025-02-01T10:00:00.0000000Z", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam",
        "operationName": "RemoteNetworkHealthLogs", "category": "RemoteNetworkHealthLogs", "tenantId": TN, "properties": rnh}
write("entra", "RemoteNetworkHealthLogs", "bgp-connected", base)
write("entra", "RemoteNetworkHealthLogs", "tunnel-disconnected", merge(base, properties={"status": "tunnelDisconnected", "description": "IPsec tunnel down", "sentBytes": 0, "receivedBytes": 0}))
write("entra", "RemoteNetworkHealthLogs", "pascal-ipv6-strings", {"time": "2025-02-01T10:05:00.0000000Z", "category": "RemoteNetworkHealthLogs", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam",
      "properties": {"CreatedDateTime": "2025-02-01T10:05:00Z", "Status": "bgpDisconnected", "SourceIp": "2001:db8::41", "DestinationIp": "2001:db8::242", "SentBytes": "10", "ReceivedBytes": "x"}})

# Sign-in edge cases of Elastic's pipeline: guest UPN (grok falls back to the whole value),
# failureReason + additionalDetails (message script), resultType "0" with a non-zero errorCode
# (outcome from status.errorCode), callerIpAddress only (source.address fallback).
guest = {"id": "00000000-0000-4000-8000-00000000b001", "createdDateTime": "2025-02-01T11:00:00Z",
         "userPrincipalName": "pat_example.org#EXT#@example.onmicrosoft.com", "userId": "00000000-0000-4000-8000-00000000a005",
         "userDisplayName": "Pat Example", "appId": "00000000-0000-4000-8000-00000000a006", "appDisplayName": "Azure Portal",
         "clientAppUsed": "Browser", "isInteractive": True, "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
         "status": {"errorCode": 50074, "failureReason": "Strong Authentication is required.", "additionalDetails": "MFA required in Azure AD"},
         "location": {"city": "Lyon", "state": "Auvergne-Rhone-Alpes", "countryOrRegion": "FR"}}
write("entra", "SignInLogs", "guest-mfa-required-caller-ip-only", {"time": "2025-02-01T11:00:00.0000000Z", "resourceId": f"/tenants/{TN}/providers/Microsoft.aadiam",
      "operationName": "Sign-in activity", "operationVersion": "1.0", "category": "SignInLogs", "tenantId": TN, "resultType": "0",
      "resultSignature": "None", "durationMs": 0, "callerIpAddress": "192.0.2.51", "correlationId": "00000000-0000-4000-8000-00000000b002",
      "identity": "Pat Example", "Level": 4, "location": "FR", "properties": guest})

# ---------------------------------------------------------------- Intune
IR = f"/TENANTS/{T}/PROVIDERS/MICROSOFT.INTUNE"
def intune(cat, op, props, result="Success", **extra):
    r = {"time": "2025-01-02T09:00:00.0000000Z", "tenantId": T, "category": cat, "operationName": op,
         "resultType": result, "resultDescription": "None", "resourceId": IR}
    r.update(extra)
    r["properties"] = props
    return r

ia = {"ActivityDate": "1/2/2025 9:00:00 AM", "ActivityResultStatus": 1, "ActivityType": 3, "AuditEventId": "a1a1a1a1-0000-4000-8000-000000000001",
      "Actor": {"Application": "5926fc8e-304e-4f59-8bed-58ca97cc39a4", "ApplicationName": "Microsoft Intune portal extension",
                "IsDelegatedAdmin": False, "Name": "Admin One", "ObjectId": OID1, "UPN": U1, "ActorType": 1},
      "Category": 2, "RelationId": "r-1", "TargetDisplayNames": ["WS-01"], "TargetObjectIds": ["b2b2b2b2-0000-4000-8000-000000000001"],
      "Targets": [{"ModifiedProperties": [], "Name": "WS-01"}]}
base = intune("AuditLogs", "Delete ManagedDevice", ia, identity=U1)
write("intune", "AuditLogs", "delete-device", base)
write("intune", "AuditLogs", "failed-policy-update", merge(base, operationName="Patch DeviceConfiguration", resultType="Failure", properties={"ActivityResultStatus": 2, "Targets": [{"ModifiedProperties": [{"Name": "PasswordRequired", "Old": "false", "New": "true"}], "Name": "Baseline"}]}))
no_provider = drop(merge(base, operationName="Create DeviceCompliancePolicy", resultType=None, properties={"Actor": {"UPN": None, "Name": "Intune", "ActorType": "system"}, "ActivityResultStatus": "1"}), "resourceId")
write("intune", "AuditLogs", "no-resource-id-shape-only", no_provider)

io = {"Category": "Enrollment", "EnrollmentType": 10, "EnrollmentTypeMessage": "AzureDomainJoined", "IntuneDeviceId": "c3c3c3c3-0000-4000-8000-000000000001",
      "IntuneUserId": OID1, "Os": "Windows", "OsVersion": "10.0.22631.2861", "ScaleUnit": "AMSUA0602", "AccountId": "acc-1", "ActivityId": "act-1"}
base = intune("OperationalLogs", "Enrollment", io)
write("intune", "OperationalLogs", "enrollment-success", base)
write("intune", "OperationalLogs", "enrollment-failure", merge(base, resultType="Fail", properties={"FailureCategory": "AuthenticationFailure", "FailureReason": "User is not licensed for Intune", "Os": "iOS", "OsVersion": "17.2"}))
write("intune", "OperationalLogs", "odd-types", merge(base, resultType=1, properties={"Os": 5, "IntuneDeviceId": None, "UserPrincipalName": U2}))

dc = {"DeviceName": "WS-01", "DeviceId": "c3c3c3c3-0000-4000-8000-000000000001", "ComplianceState": "Compliant", "OS": "Windows",
      "OSVersion": "10.0.22631.2861", "OwnerType": "Corporate", "LastContact": "2025-01-02T08:55:00", "SerialNumber": "SN-0001",
      "UPN": U1, "UserEmail": U1, "UserName": "Alex Example", "UserId": OID1, "DeviceHealthThreatLevel": "Secured", "DeviceType": "Desktop"}
base = intune("DeviceComplianceOrg", "DeviceComplianceOrg", dc)
write("intune", "DeviceComplianceOrg", "compliant", base)
write("intune", "DeviceComplianceOrg", "noncompliant-android", merge(base, properties={"ComplianceState": "Noncompliant", "OS": "AndroidForWork", "OSVersion": "14", "DeviceName": "PIXEL-7", "UPN": U2, "UserEmail": U2, "UserName": "Sam Example", "UserId": OID2}))
write("intune", "DeviceComplianceOrg", "no-user-odd", merge(base, properties={"UPN": "", "UserEmail": None, "UserName": None, "UserId": None, "OS": None, "DeviceName": ["x"]}))

dv = {"DeviceName": "MBP-07", "DeviceId": "c3c3c3c3-0000-4000-8000-000000000002", "CreatedDate": "2024-06-01T10:00:00", "LastContact": "2025-01-02T08:00:00",
      "Model": "MacBook Pro", "Manufacturer": "Apple", "OS": "macOS", "OSVersion": "14.2.1", "SerialNumber": "SN-0002",
      "CompliantState": "Compliant", "ManagedBy": "Intune", "Ownership": "Corporate", "UPN": U2, "UserEmail": U2,
      "UserName": "Sam Example", "PrimaryUser": OID2, "JoinType": "Azure AD registered", "StorageTotal": "494384", "StorageFree": "120000",
      "WifiMacAddress": "A1B2C3D4E5F6"}
base = intune("Devices", "Devices", dv)
write("intune", "Devices", "macbook", base)
write("intune", "Devices", "iphone-noncompliant", merge(base, properties={"DeviceName": "IPHONE-3", "Model": "iPhone 15", "OS": "iOS", "OSVersion": "17.2", "CompliantState": "Noncompliant"}))
write("intune", "Devices", "shared-device-odd", merge(base, properties={"UPN": None, "UserEmail": None, "UserName": None, "PrimaryUser": None, "OS": "Linux", "OSVersion": 22.04, "StorageTotal": None}))

# ---------------------------------------------------------------- Defender
def ah(table, props, t="2025-01-03T08:00:01.0000000Z"):
    return {"time": t, "tenantId": T, "operationName": "Publish", "category": "AdvancedHunting-" + table,
            "_TimeReceivedBySvc": "2025-01-03T07:59:58.0000000Z", "properties": props}

DEVP = {"Timestamp": "2025-01-03T07:59:57.5000000Z", "DeviceId": DEV, "DeviceName": "ws-01.contoso.example", "MachineGroup": "Workstations"}
INIT = {"InitiatingProcessFileName": "explorer.exe", "InitiatingProcessFolderPath": "c:\\windows\\explorer.exe",
        "InitiatingProcessCommandLine": "Explorer.EXE", "InitiatingProcessId": 4312,
        "InitiatingProcessSHA1": "1111111111111111111111111111111111111111", "InitiatingProcessSHA256": "a" * 64,
        "InitiatingProcessMD5": "b" * 32, "InitiatingProcessParentFileName": "userinit.exe", "InitiatingProcessParentId": 4200,
        "InitiatingProcessAccountDomain": "contoso", "InitiatingProcessAccountName": "alex",
        "InitiatingProcessAccountSid": "S-1-5-21-1000-1000-1000-1001", "InitiatingProcessAccountUpn": U1,
        "InitiatingProcessAccountObjectId": OID1, "InitiatingProcessCreationTime": "2025-01-03T07:00:00Z"}

def dev(**kw):
    p = dict(DEVP); p.update(INIT); p.update(kw); return p

base = ah("DeviceProcessEvents", dev(ActionType="ProcessCreated", FileName="cmd.exe", FolderPath="C:\\Windows\\System32\\cmd.exe",
          ProcessCommandLine="cmd.exe /c whoami", ProcessId=5120, ProcessCreationTime="2025-01-03T07:59:57Z",
          SHA1="2222222222222222222222222222222222222222", SHA256="c" * 64, MD5="d" * 32, FileSize=289792,
          AccountDomain="contoso", AccountName="alex", AccountSid="S-1-5-21-1000-1000-1000-1001", AccountUpn=U1, ReportId=12345))
write("defender", "AdvancedHunting-DeviceProcessEvents", "cmd-whoami", base)
write("defender", "AdvancedHunting-DeviceProcessEvents", "system-account-folder-only", merge(base, properties={"FolderPath": "C:\\Windows\\System32", "FileName": "svchost.exe", "AccountName": "system", "AccountDomain": "nt authority", "AccountUpn": None, "AccountSid": "S-1-5-18", "ProcessCommandLine": "svchost.exe -k netsvcs -p \"quoted\"", "ReportId": "12346"}))
write("defender", "AdvancedHunting-DeviceProcessEvents", "odd-types-with-original", merge(base, properties={"ProcessId": "5121", "ReportId": 1.5e3, "Timestamp": None, "FileName": {"x": 1}, "SHA256": 5}))

base = ah("DeviceNetworkEvents", dev(ActionType="ConnectionSuccess", LocalIP="192.0.2.21", LocalPort=51000, RemoteIP="198.51.100.99",
          RemotePort=443, RemoteUrl="update.contoso.example", Protocol="Tcp", LocalIPType="Private", RemoteIPType="Public", ReportId=2001))
write("defender", "AdvancedHunting-DeviceNetworkEvents", "outbound-success", base)
write("defender", "AdvancedHunting-DeviceNetworkEvents", "inbound-accepted", merge(base, properties={"ActionType": "InboundConnectionAccepted", "LocalPort": 3389, "RemoteIP": "203.0.113.66", "RemotePort": 60001, "RemoteUrl": None}))
write("defender", "AdvancedHunting-DeviceNetworkEvents", "failed-ipv6-url", merge(base, properties={"ActionType": "ConnectionFailed", "LocalIP": "::ffff:192.0.2.21", "RemoteIP": "2001:db8::99", "RemotePort": "80", "RemoteUrl": "http://files.contoso.example/a?b=c", "Protocol": "TcpV6"}))

base = ah("DeviceFileEvents", dev(ActionType="FileCreated", FileName="payload.ps1", FolderPath="C:\\Users\\alex\\Downloads\\payload.ps1",
          SHA1="3333333333333333333333333333333333333333", SHA256="e" * 64, MD5="f" * 32, FileSize=1024, ReportId=3001))
write("defender", "AdvancedHunting-DeviceFileEvents", "created", base)
write("defender", "AdvancedHunting-DeviceFileEvents", "deleted-remote-smb", merge(base, properties={"ActionType": "FileDeleted", "FolderPath": "\\\\fs01\\share", "FileName": "report.xlsx", "RequestSourceIP": "192.0.2.55", "RequestSourcePort": 445, "SHA256": None, "FileSize": None}))
write("defender", "AdvancedHunting-DeviceFileEvents", "renamed-unicode", merge(base, properties={"ActionType": "FileRenamed", "FileName": "résumé.pdf", "FolderPath": "/home/alex/Documents/résumé.pdf", "PreviousFileName": "cv.pdf", "FileSize": "2048"}))

base = ah("DeviceLogonEvents", dev(ActionType="LogonSuccess", LogonType="RemoteInteractive", AccountDomain="contoso", AccountName="alex",
          AccountSid="S-1-5-21-1000-1000-1000-1001", RemoteIP="192.0.2.77", RemotePort=50500, RemoteDeviceName="laptop-07", Protocol="Negotiate", ReportId=4001))
write("defender", "AdvancedHunting-DeviceLogonEvents", "rdp-success", base)
write("defender", "AdvancedHunting-DeviceLogonEvents", "failed", merge(base, properties={"ActionType": "LogonFailed", "FailureReason": "InvalidUserNameOrPassword", "LogonType": "Network", "RemoteDeviceName": None}))
write("defender", "AdvancedHunting-DeviceLogonEvents", "attempted-no-remote", merge(base, properties={"ActionType": "LogonAttempted", "RemoteIP": "-", "RemotePort": None, "AccountName": None}))

base = ah("DeviceRegistryEvents", dev(ActionType="RegistryValueSet", RegistryKey="HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
          RegistryValueName="Updater", RegistryValueData="C:\\Users\\Public\\upd.exe", RegistryValueType="String", ReportId=5001))
write("defender", "AdvancedHunting-DeviceRegistryEvents", "run-key-set", base)
write("defender", "AdvancedHunting-DeviceRegistryEvents", "key-deleted", merge(base, properties={"ActionType": "RegistryKeyDeleted", "RegistryKey": "HKEY_CURRENT_USER\\Software\\Contoso", "RegistryValueName": None, "RegistryValueData": None, "RegistryValueType": None}))
write("defender", "AdvancedHunting-DeviceRegistryEvents", "odd-hive", merge(base, properties={"ActionType": "RegistryValueDeleted", "RegistryKey": "\\REGISTRY\\MACHINE\\SYSTEM", "RegistryValueType": "Dword", "RegistryValueData": 1}))

base = ah("DeviceImageLoadEvents", dev(ActionType="ImageLoaded", FileName="clrjit.dll", FolderPath="C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\clrjit.dll",
          SHA1="4444444444444444444444444444444444444444", SHA256="1" * 64, MD5="2" * 32, ReportId=6001))
write("defender", "AdvancedHunting-DeviceImageLoadEvents", "dll-loaded", base)
write("defender", "AdvancedHunting-DeviceImageLoadEvents", "no-hashes", merge(base, properties={"SHA1": None, "SHA256": None, "MD5": None, "FolderPath": "C:\\Temp"}))
write("defender", "AdvancedHunting-DeviceImageLoadEvents", "no-initiating-process", merge(base, properties={k: None for k in INIT}))

base = ah("DeviceEvents", dev(ActionType="PowerShellCommand", AdditionalFields="{\"Command\":\"Invoke-WebRequest\"}", ReportId=7001))
write("defender", "AdvancedHunting-DeviceEvents", "powershell-command", base)
write("defender", "AdvancedHunting-DeviceEvents", "antivirus-detection", merge(base, properties={"ActionType": "AntivirusDetection", "FileName": "eicar.com", "FolderPath": "C:\\Users\\alex\\Downloads", "SHA256": "2546dcffc5ad854d4ddc64fbf056871cd5a00f2471cb7a5bfd4ac23b6e9eedad", "AdditionalFields": {"ThreatName": "Virus:DOS/EICAR_Test_File"}}))
write("defender", "AdvancedHunting-DeviceEvents", "user-account-created-odd", merge(base, properties={"ActionType": "UserAccountCreated", "AccountName": "backdoor", "AccountDomain": "ws-01", "AccountSid": "S-1-5-21-1000-1000-1000-1099", "RemoteIP": "", "LocalIP": 5}))

base = ah("DeviceInfo", {"Timestamp": "2025-01-03T06:00:00Z", "DeviceId": DEV, "DeviceName": "ws-01.contoso.example", "ClientVersion": "10.8760",
          "PublicIP": "203.0.113.5", "OSArchitecture": "64-bit", "OSPlatform": "Windows11", "OSBuild": 22631, "OSVersion": "10.0",
          "IsAzureADJoined": True, "LoggedOnUsers": "[{\"UserName\":\"alex\",\"DomainName\":\"CONTOSO\",\"Sid\":\"S-1-5-21-1000-1000-1000-1001\"}]",
          "MachineGroup": "Workstations", "DeviceType": "Workstation", "OnboardingStatus": "Onboarded", "Vendor": "Contoso", "Model": "CX-1", "ReportId": 8001})
write("defender", "AdvancedHunting-DeviceInfo", "windows", base)
write("defender", "AdvancedHunting-DeviceInfo", "linux-server", merge(base, properties={"OSPlatform": "Linux", "OSBuild": None, "OSVersion": "22.04", "DeviceType": "Server", "PublicIP": None, "DeviceName": "srv-01"}))
write("defender", "AdvancedHunting-DeviceInfo", "odd-types", merge(base, properties={"OSPlatform": None, "PublicIP": "203.0.113.5:0", "OSBuild": "22631.1"}))

base = ah("DeviceNetworkInfo", {"Timestamp": "2025-01-03T06:00:00Z", "DeviceId": DEV, "DeviceName": "ws-01.contoso.example",
          "NetworkAdapterName": "Ethernet", "NetworkAdapterType": "Ethernet", "NetworkAdapterStatus": "Up", "MacAddress": "00-15-5D-01-02-03",
          "IPAddresses": "[{\"IPAddress\":\"192.0.2.21\",\"SubnetPrefix\":24,\"AddressType\":\"Private\"},{\"IPAddress\":\"fe80::1\",\"SubnetPrefix\":64,\"AddressType\":\"Private\"}]",
          "ConnectedNetworks": "[{\"Name\":\"contoso.example\",\"Category\":\"Domain\"}]", "ReportId": 9001})
write("defender", "AdvancedHunting-DeviceNetworkInfo", "ethernet", base)
write("defender", "AdvancedHunting-DeviceNetworkInfo", "array-ips-bare-mac", merge(base, properties={"MacAddress": "00155d010204", "IPAddresses": [{"IPAddress": "198.51.100.21"}]}))
write("defender", "AdvancedHunting-DeviceNetworkInfo", "garbage", merge(base, properties={"MacAddress": "zz", "IPAddresses": "not json"}))

base = ah("DeviceFileCertificateInfo", {"Timestamp": "2025-01-03T06:00:00Z", "DeviceId": DEV, "DeviceName": "ws-01.contoso.example",
          "SHA1": "5555555555555555555555555555555555555555", "IsSigned": True, "SignatureType": "Embedded", "Signer": "Contoso Ltd",
          "SignerHash": "6666666666666666666666666666666666666666", "Issuer": "CN=Contoso Code Signing CA", "IssuerHash": "7777777777777777777777777777777777777777",
          "CertificateSerialNumber": "0a1b2c", "CrlDistributionPointUrls": None, "CertificateCreationTime": "2024-01-01T00:00:00Z",
          "CertificateExpirationTime": "2026-01-01T00:00:00Z", "CertificateCountersignatureTime": None, "IsTrusted": True, "IsRootSignerMicrosoft": False, "ReportId": 9101})
write("defender", "AdvancedHunting-DeviceFileCertificateInfo", "signed", base)
write("defender", "AdvancedHunting-DeviceFileCertificateInfo", "untrusted", merge(base, properties={"IsTrusted": False, "Signer": "Unknown Publisher"}))
write("defender", "AdvancedHunting-DeviceFileCertificateInfo", "string-bools", merge(base, properties={"IsSigned": "true", "IsTrusted": "FALSE", "CertificateExpirationTime": "garbage"}))

base = ah("AlertInfo", {"Timestamp": "2025-01-03T09:00:00Z", "AlertId": "da637000000000000000_-1000000000", "Title": "Suspicious PowerShell command line",
          "Category": "Execution", "Severity": "Medium", "ServiceSource": "Microsoft Defender for Endpoint", "DetectionSource": "EDR",
          "AttackTechniques": "[\"PowerShell (T1059.001)\",\"Command and Scripting Interpreter (T1059)\"]"})
write("defender", "AdvancedHunting-AlertInfo", "powershell", base)
write("defender", "AdvancedHunting-AlertInfo", "malware-high", merge(base, properties={"Category": "Malware", "Severity": "High", "Title": "'Mimikatz' credential theft tool", "AttackTechniques": ["OS Credential Dumping (T1003)"]}))
write("defender", "AdvancedHunting-AlertInfo", "informational-no-techniques", merge(base, properties={"Severity": "Informational", "AttackTechniques": "", "Title": "Title with | pipe and = sign"}))

base = ah("AlertEvidence", {"Timestamp": "2025-01-03T09:00:00Z", "AlertId": "da637000000000000000_-1000000000", "Title": "Suspicious PowerShell command line",
          "Categories": "[\"Execution\"]", "AttackTechniques": "[\"PowerShell (T1059.001)\"]", "ServiceSource": "Microsoft Defender for Endpoint",
          "DetectionSource": "EDR", "EntityType": "Process", "EvidenceRole": "Impacted", "EvidenceDirection": None,
          "FileName": "powershell.exe", "FolderPath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
          "SHA1": "8888888888888888888888888888888888888888", "SHA256": "9" * 64, "ProcessCommandLine": "powershell -enc SQBFAFgA",
          "DeviceId": DEV, "DeviceName": "ws-01.contoso.example", "AccountName": "alex", "AccountDomain": "contoso", "AccountSid": "S-1-5-21-1000-1000-1000-1001",
          "AccountObjectId": OID1, "AccountUpn": U1, "Severity": "Medium"})
write("defender", "AdvancedHunting-AlertEvidence", "process", base)
write("defender", "AdvancedHunting-AlertEvidence", "ip-url", ah("AlertEvidence", {"Timestamp": "2025-01-03T09:01:00Z", "AlertId": "da637000000000000000_-1000000001", "Title": "Connection to malicious URL", "Categories": "[\"CommandAndControl\"]", "EntityType": "Url", "EvidenceRole": "Related", "RemoteIP": "203.0.113.250", "RemoteUrl": "https://bad.example/c2", "Severity": "High"}))
write("defender", "AdvancedHunting-AlertEvidence", "mailbox-odd", ah("AlertEvidence", {"Timestamp": "2025-01-03T09:02:00Z", "AlertId": 17, "EntityType": "MailMessage", "EmailSubject": "Invoice\nURGENT", "NetworkMessageId": "nm-1", "AccountUpn": U2, "Severity": "unknownFutureValue"}))

email = {"Timestamp": "2025-01-03T10:00:00Z", "NetworkMessageId": "aaaa0000-0000-4000-8000-000000000001", "InternetMessageId": "<msg-1@contoso.example>",
         "SenderMailFromAddress": "bounce@partner.example", "SenderFromAddress": "ceo@partner.example", "SenderDisplayName": "CEO",
         "SenderFromDomain": "partner.example", "SenderIPv4": "198.51.100.25", "RecipientEmailAddress": U1, "RecipientObjectId": OID1,
         "Subject": "Quarterly numbers", "EmailClusterId": 1234, "EmailDirection": "Inbound", "DeliveryAction": "Delivered",
         "DeliveryLocation": "Inbox/folder", "ThreatTypes": "", "AttachmentCount": 1, "UrlCount": 2, "EmailLanguage": "en", "ReportId": "r-email-1"}
base = ah("EmailEvents", email)
write("defender", "AdvancedHunting-EmailEvents", "delivered", base)
write("defender", "AdvancedHunting-EmailEvents", "phish-blocked", merge(base, properties={"DeliveryAction": "Blocked", "DeliveryLocation": "Quarantine", "ThreatTypes": "Phish, Malware", "DetectionMethods": "{\"Phish\":[\"URL detonation\"]}"}))
write("defender", "AdvancedHunting-EmailEvents", "ipv6-intraorg-unicode", merge(base, properties={"SenderIPv4": None, "SenderIPv6": "2001:db8::25", "EmailDirection": "Intra-org", "Subject": "Réunion \u00e0 9h \u2014 ordre du jour", "AttachmentCount": "0"}))

att = {"Timestamp": "2025-01-03T10:00:00Z", "NetworkMessageId": "aaaa0000-0000-4000-8000-000000000001", "SenderFromAddress": "ceo@partner.example",
       "RecipientEmailAddress": U1, "RecipientObjectId": OID1, "FileName": "numbers.xlsx", "FileType": "xlsx", "SHA256": "ab" * 32,
       "FileSize": 20480, "ThreatTypes": None, "DetectionMethods": None, "ReportId": "r-att-1"}
base = ah("EmailAttachmentInfo", att)
write("defender", "AdvancedHunting-EmailAttachmentInfo", "xlsx", base)
write("defender", "AdvancedHunting-EmailAttachmentInfo", "malware", merge(base, properties={"FileName": "invoice.iso", "FileType": "iso", "ThreatTypes": "Malware", "ThreatNames": "Trojan:Win32/Sample"}))
write("defender", "AdvancedHunting-EmailAttachmentInfo", "no-hash-string-size", merge(base, properties={"SHA256": None, "FileSize": "1e3", "FileName": None}))

base = ah("EmailUrlInfo", {"Timestamp": "2025-01-03T10:00:00Z", "NetworkMessageId": "aaaa0000-0000-4000-8000-000000000001",
          "Url": "https://portal.partner.example/login?next=/home", "UrlDomain": "portal.partner.example", "UrlLocation": "Body", "ReportId": "r-url-1"})
write("defender", "AdvancedHunting-EmailUrlInfo", "body-link", base)
write("defender", "AdvancedHunting-EmailUrlInfo", "no-scheme", merge(base, properties={"Url": "partner.example/path", "UrlDomain": "partner.example", "UrlLocation": "Subject"}))
write("defender", "AdvancedHunting-EmailUrlInfo", "ipv6-port", merge(base, properties={"Url": "http://[2001:db8::7]:8080/x", "UrlDomain": None}))

base = ah("EmailPostDeliveryEvents", {"Timestamp": "2025-01-03T11:00:00Z", "NetworkMessageId": "aaaa0000-0000-4000-8000-000000000001",
          "InternetMessageId": "<msg-1@contoso.example>", "Action": "Moved to quarantine", "ActionType": "Phish ZAP", "ActionTrigger": "SpecialAction",
          "ActionResult": "Success", "RecipientEmailAddress": U1, "DeliveryLocation": "Quarantine", "ThreatTypes": "Phish", "DetectionMethods": None, "ReportId": "r-pd-1"})
write("defender", "AdvancedHunting-EmailPostDeliveryEvents", "phish-zap", base)
write("defender", "AdvancedHunting-EmailPostDeliveryEvents", "manual-remediation-error", merge(base, properties={"ActionType": "Manual Remediation", "ActionTrigger": "AdminAction", "ActionResult": "Error"}))
write("defender", "AdvancedHunting-EmailPostDeliveryEvents", "unknown-result", merge(base, properties={"ActionResult": "Pending", "RecipientEmailAddress": None}))

ident = {"Timestamp": "2025-01-03T12:00:00Z", "ActionType": "LogonSuccess", "Application": "Active Directory", "LogonType": "Resource access",
         "Protocol": "Kerberos", "AccountName": "alex", "AccountDomain": "contoso.example", "AccountUpn": U1, "AccountSid": "S-1-5-21-1000-1000-1000-1001",
         "AccountObjectId": OID1, "AccountDisplayName": "Alex Example", "DeviceName": "ws-01.contoso.example", "DeviceType": "Workstation",
         "OSPlatform": "Windows", "IPAddress": "192.0.2.21", "Port": 50321, "DestinationDeviceName": "dc-01.contoso.example",
         "DestinationIPAddress": "192.0.2.2", "DestinationPort": 88, "TargetDeviceName": "dc-01.contoso.example", "Location": "FR", "ISP": "Example ISP", "ReportId": "r-il-1"}
base = ah("IdentityLogonEvents", ident)
write("defender", "AdvancedHunting-IdentityLogonEvents", "kerberos-success", base)
write("defender", "AdvancedHunting-IdentityLogonEvents", "cloud-failed", merge(base, properties={"ActionType": "LogonFailed", "Application": "Microsoft 365", "Protocol": None, "FailureReason": "WrongPassword", "IPAddress": "203.0.113.90", "Port": None, "DestinationIPAddress": None, "DestinationPort": None, "TargetDeviceName": None, "AccountName": None}))
write("defender", "AdvancedHunting-IdentityLogonEvents", "odd-port-location", merge(base, properties={"Port": "abc", "Location": "France", "IPAddress": "::1"}))

base = ah("IdentityQueryEvents", {"Timestamp": "2025-01-03T12:10:00Z", "ActionType": "LDAP query", "Application": "Active Directory", "QueryType": "AllUsers",
          "QueryTarget": "All users", "Query": "(&(objectClass=user))", "Protocol": "Ldap", "AccountName": "alex", "AccountDomain": "contoso.example",
          "AccountUpn": U1, "AccountSid": "S-1-5-21-1000-1000-1000-1001", "DeviceName": "ws-01.contoso.example", "IPAddress": "192.0.2.21", "Port": 50400,
          "DestinationDeviceName": "dc-01.contoso.example", "DestinationIPAddress": "192.0.2.2", "DestinationPort": 389, "TargetDeviceName": "dc-01.contoso.example", "ReportId": "r-iq-1"})
write("defender", "AdvancedHunting-IdentityQueryEvents", "ldap", base)
write("defender", "AdvancedHunting-IdentityQueryEvents", "dns", merge(base, properties={"ActionType": "DNS query", "Protocol": "Dns", "QueryType": "A", "QueryTarget": "dc-01.contoso.example", "Query": None, "DestinationPort": 53}))
write("defender", "AdvancedHunting-IdentityQueryEvents", "samr-no-account", merge(base, properties={"ActionType": "SAMR query", "Protocol": "Samr", "AccountName": None, "AccountUpn": None, "AccountSid": None}))

base = ah("IdentityDirectoryEvents", {"Timestamp": "2025-01-03T12:20:00Z", "ActionType": "Account Password changed", "Application": "Active Directory",
          "TargetAccountUpn": U2, "TargetAccountDisplayName": "Sam Example", "TargetDeviceName": None, "DestinationDeviceName": "dc-01.contoso.example",
          "AccountName": "alex", "AccountDomain": "contoso.example", "AccountUpn": U1, "AccountSid": "S-1-5-21-1000-1000-1000-1001",
          "AdditionalFields": "{\"ACTOR.DEVICE\":\"ws-01\"}", "IPAddress": "192.0.2.21", "ReportId": "r-id-1"})
write("defender", "AdvancedHunting-IdentityDirectoryEvents", "password-changed", base)
write("defender", "AdvancedHunting-IdentityDirectoryEvents", "group-membership-added", merge(base, properties={"ActionType": "Group Membership changed", "AdditionalFields": {"TO.GROUP": "Domain Admins"}}))
write("defender", "AdvancedHunting-IdentityDirectoryEvents", "no-target", merge(base, properties={"ActionType": "Directory Services replication", "TargetAccountUpn": None, "TargetAccountDisplayName": None, "IPAddress": "192.0.2.200"}))

cae = {"Timestamp": "2025-01-03T13:00:00Z", "ActionType": "FileDownloaded", "Application": "Microsoft SharePoint Online", "ApplicationId": 20892,
       "AccountObjectId": OID1, "AccountId": U1, "AccountDisplayName": "Alex Example", "IsAdminOperation": False, "DeviceType": "Desktop",
       "OSPlatform": "Windows 10", "IPAddress": "203.0.113.60", "IsAnonymousProxy": False, "CountryCode": "FR", "City": "Paris", "ISP": "Example ISP",
       "UserAgent": "Mozilla/5.0", "ActivityType": "Download", "ActivityObjects": [{"Type": "File", "Name": "plan.docx"}], "ObjectName": "plan.docx",
       "RawEventData": {"Operation": "FileDownloaded", "Workload": "SharePoint"}, "ReportId": "r-ca-1"}
base = ah("CloudAppEvents", cae)
write("defender", "AdvancedHunting-CloudAppEvents", "sharepoint-download", base)
write("defender", "AdvancedHunting-CloudAppEvents", "admin-guid-account", merge(base, properties={"ActionType": "Set-Mailbox", "Application": "Microsoft Exchange Online", "AccountId": OID2, "AccountDisplayName": "Sam Example", "AccountObjectId": OID2, "IsAdminOperation": True, "City": None}))
write("defender", "AdvancedHunting-CloudAppEvents", "raw-event-string", merge(base, properties={"RawEventData": "{\"bad json", "IPAddress": "[2001:db8::60]:443", "CountryCode": None}))

base = ah("UrlClickEvents", {"Timestamp": "2025-01-03T14:00:00Z", "Url": "https://bad.example/login", "ActionType": "ClickBlocked", "AccountUpn": U1,
          "Workload": "Email", "NetworkMessageId": "aaaa0000-0000-4000-8000-000000000001", "ThreatTypes": "Phish", "DetectionMethods": "URL detonation reputation",
          "IPAddress": "203.0.113.61", "IsClickedThrough": False, "UrlChain": "[\"https://bad.example/login\"]", "ReportId": "r-uc-1"})
write("defender", "AdvancedHunting-UrlClickEvents", "blocked", base)
write("defender", "AdvancedHunting-UrlClickEvents", "allowed-teams", merge(base, properties={"ActionType": "ClickAllowed", "Workload": "Teams", "Url": "https://portal.contoso.example/", "ThreatTypes": None}))
write("defender", "AdvancedHunting-UrlClickEvents", "clicked-through", merge(base, properties={"ActionType": "ClickBlockedByTenantPolicy", "IsClickedThrough": "true", "AccountUpn": None}))

# ---------------------------------------------------------------- O365
def o365(rt, op, workload, **kw):
    r = {"Id": "00000000-0365-4000-8000-%012d" % (rt * 10), "RecordType": rt, "CreationTime": "2025-01-04T10:03:19", "Operation": op,
         "OrganizationId": T, "UserType": 0, "UserKey": "10030000A1B2C3D4", "Workload": workload, "ResultStatus": "Succeeded",
         "UserId": U1, "ClientIP": "203.0.113.10"}
    r.update(kw)
    return r

base = o365(8, "Update user.", "AzureActiveDirectory", ObjectId=U2, AzureActiveDirectoryEventType=1, ResultStatus="Success",
            Actor=[{"ID": U1, "Type": 5}], Target=[{"ID": "User_" + OID2, "Type": 2}, {"ID": U2, "Type": 5}],
            ModifiedProperties=[{"Name": "AccountEnabled", "NewValue": "[false]", "OldValue": "[true]"}])
write("o365", "AzureActiveDirectory", "update-user", base)
write("o365", "AzureActiveDirectory", "add-group-failed", merge(base, Operation="Add member to group.", ResultStatus="Failure", Target=[{"ID": "Group_x", "Type": 2}], ObjectId="Finance"))
write("o365", "AzureActiveDirectory", "reset-password-ip-port", merge(base, Operation="Reset user password.", ClientIP="203.0.113.10:53422", ResultStatus="success", RecordType="8"))

base = o365(15, "UserLoggedIn", "AzureActiveDirectory", ObjectId="00000003-0000-0000-c000-000000000000", ResultStatus="Success",
            AzureActiveDirectoryEventType=1, ApplicationId="cccccccc-0000-0000-0000-000000000001", ErrorNumber="0",
            ExtendedProperties=[{"Name": "UserAgent", "Value": "Mozilla/5.0 (Macintosh)"}, {"Name": "RequestType", "Value": "OAuth2:Authorize"}])
write("o365", "AzureActiveDirectoryStsLogon", "logged-in", base)
write("o365", "AzureActiveDirectoryStsLogon", "login-failed-status-success", merge(base, Operation="UserLoginFailed", ErrorNumber="50126", LogonError="InvalidUserNameOrPassword"))
write("o365", "AzureActiveDirectoryStsLogon", "ipv6-port-numeric-error", merge(base, ClientIP="[2001:db8::10]:4431", ErrorNumber=0, ExtendedProperties="oops"))

base = o365(1, "Set-Mailbox", "Exchange", ResultStatus="True", ObjectId="Sam Example", OrganizationName="contoso.example",
            OriginatingServer="SRV01 (15.20.0000.000)", ExternalAccess=False, ClientIP="203.0.113.11",
            Parameters=[{"Name": "Identity", "Value": U2}, {"Name": "ForwardingSmtpAddress", "Value": "smtp:out@partner.example"}])
write("o365", "ExchangeAdmin", "set-mailbox-forwarding", base)
write("o365", "ExchangeAdmin", "new-inbox-rule-failed", merge(base, Operation="New-InboxRule", ResultStatus="False", Parameters=[{"Name": "Name", "Value": "x"}]))
write("o365", "ExchangeAdmin", "no-client-ip-string-type", merge(base, ClientIP=None, UserType="2", Parameters="not-a-list", Operation="Remove-MailboxPermission"))

base = o365(2, "Send", "Exchange", ClientIP="203.0.113.12", ClientInfoString="Client=OWA;Action=ViaProxy", LogonType=0,
            MailboxOwnerUPN=U1, MailboxGuid="mb-1", Item={"Id": "item-1", "Subject": "Hello", "InternetMessageId": "<m2@contoso.example>", "ParentFolder": {"Path": "\\Sent Items"}})
write("o365", "ExchangeItem", "send", base)
write("o365", "ExchangeItem", "delegate-send-as", merge(base, Operation="SendAs", UserId=U2, LogonType=1, ResultStatus="Failed"))
write("o365", "ExchangeItem", "item-not-object", merge(base, Operation="Update", Item="item-1", ClientIP="2001:db8::12"))

base = o365(6, "FileDownloaded", "SharePoint", ObjectId="https://contoso.sharepoint.example/sites/finance/Shared Documents/plan.xlsx",
            SiteUrl="https://contoso.sharepoint.example/sites/finance/", SourceRelativeUrl="Shared Documents", SourceFileName="plan.xlsx",
            SourceFileExtension="xlsx", UserAgent="Mozilla/5.0", ItemType="File", EventSource="SharePoint", ClientIP="203.0.113.13")
write("o365", "SharePointFileOperation", "download", base)
write("o365", "SharePointFileOperation", "onedrive-deleted", merge(base, Workload="OneDrive", Operation="FileDeleted", ObjectId="https://contoso-my.sharepoint.example/personal/alex/Documents/old.txt", SiteUrl="https://contoso-my.sharepoint.example/personal/alex/", SourceFileName="old.txt", SourceFileExtension="txt"))
write("o365", "SharePointFileOperation", "anonymous-unicode", merge(base, UserId="urn:spo:anon#0123", UserType=10, Operation="FileAccessed", SourceFileName="budget ñ 2025.xlsx", ClientIP="203.0.113.13:443", UserAgent=None))

base = o365(14, "SharingSet", "SharePoint", ObjectId="https://contoso.sharepoint.example/sites/finance/Shared Documents/plan.xlsx",
            SiteUrl="https://contoso.sharepoint.example/sites/finance/", SourceFileName="plan.xlsx", TargetUserOrGroupName="guest@partner.example",
            TargetUserOrGroupType="Guest", EventData="<Permission>Contribute</Permission>", ClientIP="203.0.113.14")
write("o365", "SharePointSharingOperation", "share-with-guest", base)
write("o365", "SharePointSharingOperation", "anonymous-link", merge(base, Operation="AnonymousLinkCreated", TargetUserOrGroupName=None, TargetUserOrGroupType=None))
write("o365", "SharePointSharingOperation", "group-target", merge(base, Operation="AddedToGroup", TargetUserOrGroupName="Finance Members", TargetUserOrGroupType="SharePointGroup", ResultStatus=None))

base = o365(25, "MemberAdded", "MicrosoftTeams", TeamName="Finance", TeamGuid="19:abc@thread.tacv2", CommunicationType="Team",
            Members=[{"DisplayName": "Sam Example", "Role": 1, "UPN": U2}], ClientIP=None)
write("o365", "MicrosoftTeams", "member-added", base)
write("o365", "MicrosoftTeams", "team-created", merge(base, Operation="TeamCreated", Members=None))
write("o365", "MicrosoftTeams", "message-sent-odd", merge(base, Operation="MessageSent", Members="x", ClientIP="198.51.100.40", ResultStatus=5))

dlp_sp = o365(11, "DLPRuleMatch", "SharePoint", ObjectId="https://contoso.sharepoint.example/sites/hr/ids.csv", UserId=U1, ClientIP=None,
              IncidentId="inc-1", SensitiveInfoDetectionIsIncluded=True,
              SharePointMetaData={"From": U1, "FileName": "ids.csv", "FilePathUrl": "https://contoso.sharepoint.example/sites/hr/ids.csv", "SiteCollectionUrl": "https://contoso.sharepoint.example/sites/hr"},
              PolicyDetails=[{"PolicyId": "p-1", "PolicyName": "PII", "Rules": [{"RuleId": "r-1", "RuleName": "National IDs", "Severity": "High", "Actions": ["NotifyUser", "BlockAccess"]}]}])
write("o365", "ComplianceDLPSharePoint", "pii-match", dlp_sp)
write("o365", "ComplianceDLPSharePoint", "low-no-actions", merge(dlp_sp, PolicyDetails=[{"PolicyId": "p-2", "PolicyName": "Finance", "Rules": [{"RuleId": "r-2", "RuleName": "Card numbers", "Severity": "Low"}]}]))
write("o365", "ComplianceDLPSharePoint", "policy-details-odd", merge(dlp_sp, PolicyDetails={"PolicyId": "p-3"}, SharePointMetaData=None))

dlp_ex = o365(13, "DLPRuleMatch", "Exchange", ObjectId="<m3@contoso.example>", UserId=U1, ClientIP=None, IncidentId="inc-2",
              ExchangeMetaData={"From": U1, "To": ["out@partner.example", U2], "CC": [], "Subject": "Customer list", "MessageID": "<m3@contoso.example>", "Sent": "2025-01-04T10:00:00"},
              PolicyDetails=[{"PolicyId": "p-1", "PolicyName": "PII", "Rules": [{"RuleId": "r-3", "RuleName": "Customer data outbound", "Severity": "Medium", "Actions": ["BlockAccess"]}]}])
write("o365", "ComplianceDLPExchange", "outbound-block", dlp_ex)
write("o365", "ComplianceDLPExchange", "override", merge(dlp_ex, Operation="DLPRuleUndo", PolicyDetails=[{"PolicyId": "p-1", "PolicyName": "PII", "Rules": []}]))
write("o365", "ComplianceDLPExchange", "to-as-string-subject-escapes", merge(dlp_ex, ExchangeMetaData={"From": U1, "To": "one@partner.example", "Subject": "a=b|c\\d\nnext"}))

sca = o365(40, "AlertTriggered", "SecurityComplianceCenter", UserId="SecurityComplianceAlerts", ClientIP=None, ResultStatus=None,
           AlertId="a-1", AlertType="System", Name="Email messages containing malicious URL removed after delivery",
           PolicyId="pol-a", Status="Active", Severity="Informational", Category="ThreatManagement", Source="Office 365 Security & Compliance",
           Comments="New alert", Data="{\"f3u\":\"alex@contoso.example\"}", AlertEntityId=U1, EntityType="User",
           AlertLinks=[{"AlertLinkType": "AlertDetails", "AlertLinkHref": "https://security.microsoft.com/alerts/a-1"}])
write("o365", "SecurityComplianceAlerts", "zap-info", sca)
write("o365", "SecurityComplianceAlerts", "dlp-high", merge(sca, Name="DLP policy match", Severity="High", Category="DataLossPrevention", AlertLinks=[]))
write("o365", "SecurityComplianceAlerts", "resolved-odd", merge(sca, Operation="AlertEntityGenerated", Status="Resolved", Severity=2, AlertLinks="x"))

ti = o365(28, "TIMailData", "ThreatIntelligence", UserId="ThreatIntelligence", ClientIP=None, ResultStatus=None,
          AttachmentData=[{"FileName": "invoice.html", "FileType": "html", "FileVerdict": 1, "SHA256": "cd" * 32}],
          DeliveryAction="Blocked", DetectionMethod="URL detonation", DetectionType="Inline", Directionality="Inbound",
          InternetMessageId="<m4@partner.example>", MessageTime="2025-01-04T10:00:00", NetworkMessageId="nm-4",
          P1Sender="bounce@partner.example", P2Sender="billing@partner.example", Recipients=[U1, U2], SenderIp="198.51.100.44",
          Subject="Your invoice", Verdict="Phish", Policy=2, PolicyAction=3)
write("o365", "ThreatIntelligence", "phish-blocked", ti)
write("o365", "ThreatIntelligence", "malware", merge(ti, Verdict="Malware", Subject="Scan", AttachmentData=[{"FileName": "scan.iso", "FileType": "iso", "MalwareFamily": "Trojan"}]))
write("o365", "ThreatIntelligence", "odd-recipients", merge(ti, Recipients="alex@contoso.example", Directionality="IntraOrg", AttachmentData=[5], SenderIp="198.51.100.44:25"))

tiu = o365(41, "TIUrlClickData", "ThreatIntelligence", UserId=U1, ClientIP=None, ResultStatus=None, Url="https://bad.example/x?y=1",
           UserIp="203.0.113.70", TimeOfClick="2025-01-04T10:02:00", AppName="Mail", SourceId="src-1", UrlClickAction=2)
write("o365", "ThreatIntelligenceUrl", "blocked-click", tiu)
write("o365", "ThreatIntelligenceUrl", "teams-click", merge(tiu, AppName="Teams", UrlClickAction=1, Url="https://contoso.example/"))
write("o365", "ThreatIntelligenceUrl", "no-url", merge(tiu, Url=None, UserIp="2001:db8::70", TimeOfClick=17))

# ---------------------------------------------------------------- Graph
g_signin = dict(signin_props, status={"errorCode": 50126, "failureReason": "Invalid username or password."}, signInEventTypes=["interactiveUser"], createdDateTime="2025-01-05T10:07:44Z")
write("graph", "signIn", "failed", g_signin)
write("graph", "signIn", "noninteractive-hinted", {"id": "bbbbbbbb-3333-4333-8333-000000000002", "createdDateTime": "2025-01-05T10:07:44Z", "userPrincipalName": U1, "appId": "cccccccc-0000-0000-0000-000000000002", "ipAddress": "203.0.113.10", "signInEventTypes": ["nonInteractiveUser"], "isInteractive": False, "status": {"errorCode": 0}, "riskLevelDuringSignIn": "none"}, hint="graph:signIns")
write("graph", "signIn", "minimal-odd", {"id": "bbbbbbbb-3333-4333-8333-000000000003", "createdDateTime": "2025-01-05T10:08:00.5+02:00", "isInteractive": "yes", "status": {"errorCode": "0"}, "ipAddress": 12, "location": []})

g_audit = dict(audit_props, activityDateTime="2025-01-05T11:00:00Z")
write("graph", "directoryAudit", "update-user", g_audit)
write("graph", "directoryAudit", "delete-group-hinted", dict(g_audit, activityDisplayName="Delete group", operationType="Delete", targetResources=[{"id": "g-1", "displayName": "Old", "type": "Group"}]), hint="graph:/auditLogs/directoryAudits")
write("graph", "directoryAudit", "odd-targets", dict(g_audit, targetResources="none", initiatedBy={"user": "x"}, result="timeout"))

g_prov = dict(prov_props, activityDateTime="2025-01-05T12:00:00Z")
write("graph", "provisioning", "create", g_prov)
write("graph", "provisioning", "disable-warning", dict(g_prov, provisioningAction="disable", provisioningStatusInfo={"status": "warning"}))
write("graph", "provisioning", "hinted-minimal", {"id": "p-9", "activityDateTime": "2025-01-05T12:30:00Z"}, hint="graph:provisioning")

write("graph", "riskDetection", "typical", dict(risk_event, tenantId=T))
write("graph", "riskDetection", "hinted-low", dict(risk_event, riskLevel="low", riskEventType="anonymizedIPAddress"), hint="graph:/identityProtection/riskDetections")
write("graph", "riskDetection", "no-location", dict(risk_event, location=None, ipAddress=None, detectedDateTime=None))

write("graph", "riskyUser", "typical", risky_user)
write("graph", "riskyUser", "dismissed", dict(risky_user, riskState="dismissed", riskLevel="none", riskDetail="adminDismissedAllRiskForUser"))
write("graph", "riskyUser", "hinted-odd", {"id": OID2, "riskLevel": 5, "riskLastUpdatedDateTime": "garbage"}, hint="graph:riskyUsers")

alert = {"@odata.type": "#microsoft.graph.security.alert", "id": "da637000000000000000_-1000000000", "providerAlertId": "pa-1",
         "incidentId": "42", "status": "new", "severity": "medium", "classification": None, "determination": None,
         "serviceSource": "microsoftDefenderForEndpoint", "detectionSource": "microsoftDefenderForEndpoint", "detectorId": "det-1",
         "tenantId": T, "title": "Suspicious PowerShell command line", "description": "A suspicious PowerShell command line was observed.",
         "category": "Execution", "assignedTo": None, "alertWebUrl": "https://security.microsoft.com/alerts/da637000000000000000_-1000000000",
         "incidentWebUrl": "https://security.microsoft.com/incidents/42", "mitreTechniques": ["T1059.001", "T1105"],
         "createdDateTime": "2025-01-05T13:00:00.123Z", "lastUpdateDateTime": "2025-01-05T13:05:00Z",
         "firstActivityDateTime": "2025-01-05T12:58:00Z", "lastActivityDateTime": "2025-01-05T12:59:00Z",
         "evidence": [
             {"@odata.type": "#microsoft.graph.security.deviceEvidence", "deviceDnsName": "ws-01.contoso.example", "mdeDeviceId": DEV, "osPlatform": "Windows11", "osBuild": 22631, "ipInterfaces": ["192.0.2.21", "fe80::1"]},
             {"@odata.type": "#microsoft.graph.security.userEvidence", "userAccount": {"accountName": "alex", "domainName": "contoso", "userSid": "S-1-5-21-1000-1000-1000-1001", "azureAdUserId": OID1, "userPrincipalName": U1}},
             {"@odata.type": "#microsoft.graph.security.processEvidence", "processId": 5120, "processCommandLine": "powershell -enc SQBFAFgA", "imageFile": {"fileName": "powershell.exe"}, "parentProcessId": 4312, "parentProcessImageFile": {"fileName": "explorer.exe"}},
             {"@odata.type": "#microsoft.graph.security.fileEvidence", "fileDetails": {"fileName": "payload.ps1", "filePath": "C:\\Users\\alex\\Downloads", "sha1": "3333333333333333333333333333333333333333", "sha256": "e" * 64, "fileSize": 1024}},
             {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "203.0.113.250"}]}
write("graph", "alert_v2", "endpoint", alert)
write("graph", "alert_v2", "malware-high-no-evidence", dict(alert, category="Malware", severity="high", evidence=[], mitreTechniques=[], **{"@odata.type": None}))
write("graph", "alert_v2", "hinted-odd-evidence", {"id": "a-3", "createdDateTime": "2025-01-05T14:00:00Z", "severity": "unknownFutureValue", "evidence": [1, {"@odata.type": 5}, {"@odata.type": "#microsoft.graph.security.fileEvidence", "fileDetails": "x"}]}, hint="graph:security/alerts_v2")

incident = {"@odata.type": "#microsoft.graph.security.incident", "id": "42", "tenantId": T, "status": "active", "severity": "high",
            "classification": "truePositive", "determination": "malware", "displayName": "Multi-stage incident involving Execution on one endpoint",
            "incidentWebUrl": "https://security.microsoft.com/incidents/42", "redirectIncidentId": None, "assignedTo": "soc@contoso.example",
            "createdDateTime": "2025-01-05T13:01:00Z", "lastUpdateDateTime": "2025-01-05T15:00:00Z", "tags": ["ransomware"], "comments": []}
write("graph", "incident", "active-high", incident)
write("graph", "incident", "expanded-alerts", dict(incident, classification="unknown", alerts=[{"id": "a-1", "evidence": [{"deviceDnsName": "ws-02.contoso.example", "userAccount": {"userPrincipalName": U2}}]}]))
write("graph", "incident", "hinted-minimal", {"id": "43", "displayName": "Single alert", "lastUpdateDateTime": "2025-01-05T16:00:00Z", "severity": "low"}, hint="graph:/security/incidents")

# ---------------------------------------------------------------- Unknown / fallback
write("unknown", "unknown", "azure-other-category", {"time": "2025-01-06T10:00:00Z", "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV1", "category": "AuditEvent", "operationName": "SecretGet", "properties": {"id": 1}})
write("unknown", "unknown", "defender-new-table", ah("BehaviorInfo", {"Timestamp": "2025-01-06T10:00:00Z", "BehaviorId": "b-1"}))
write("unknown", "unknown", "entra-new-category", {"time": "2025-01-06T10:00:00Z", "resourceId": f"/tenants/{T}/providers/Microsoft.aadiam", "category": "FutureEntraPreviewLogs", "tenantId": T, "properties": {}})
write("unknown", "unknown", "o365-new-record-type", o365(999, "CopilotFuture", "Copilot"))
write("unknown", "unknown", "plain-object", {"hello": "world", "Timestamp": "2025-01-06T10:00:00Z"})
print("ok")
