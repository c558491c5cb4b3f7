//! Stand-in of the Entra ID token endpoint (docs/PROTOCOLS.md sections 0 and 1): `POST
//! /{tenant}/oauth2/v2.0/token` with the client-credentials grant, the documented error bodies
//! (AADSTS codes), short token lifetimes and injected 503s, for tests of every Entra-authenticated
//! source and destination.
#![allow(dead_code)]
// Handlers answer with a `Response` as their error; boxing it would only add noise to test code.
#![allow(clippy::result_large_err, clippy::type_complexity)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;

/// What the stand-in knows and how it misbehaves; shared with the test.
#[derive(Default)]
pub struct EntraState {
    /// tenant -> (client id -> secret).
    pub apps: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Lifetime of issued tokens, seconds.
    pub expires_in: AtomicU64,
    /// Answer this many requests with 503 `temporarily_unavailable` before serving.
    pub fail_next: AtomicUsize,
    /// Tokens issued, in order: (tenant, client id, scope, token).
    pub issued: Mutex<Vec<(String, String, String, String)>>,
    /// Requests received (all outcomes).
    pub requests: AtomicUsize,
    /// Registered certificates: client id -> (SHA-1 thumbprint, PKCS#1 RSA public key DER).
    pub certificates: Mutex<HashMap<String, (Vec<u8>, Vec<u8>)>>,
    /// Expiry of every issued token.
    pub expiry: Mutex<HashMap<String, std::time::Instant>>,
    /// Client assertion ids seen (a replayed `jti` is refused).
    pub assertion_ids: Mutex<Vec<String>>,
}

impl EntraState {
    /// Register a certificate (its DER and the RSA public key, PKCS#1 DER) for `client_id`.
    pub fn register_certificate(&self, client_id: &str, certificate_der: &[u8], public_key: &[u8]) {
        let thumbprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, certificate_der);
        self.certificates.lock().unwrap().insert(
            client_id.to_string(),
            (thumbprint.as_ref().to_vec(), public_key.to_vec()),
        );
    }
}

/// Check a certificate client assertion the way Entra does: known `x5t`, RS256 signature by the
/// registered key, `aud` = this token URL, `iss` = `sub` = client id, valid now, fresh `jti`.
fn verify_assertion(state: &EntraState, token_url: &str, client_id: &str, jwt: &str) -> Result<(), Response> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let bad = |code: u64, text: &str| aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, text);
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err(bad(700027, "Client assertion failed signature validation."));
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).ok();
    let header: serde_json::Value = decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad(700027, "Client assertion header is not JSON."))?;
    let claims: serde_json::Value = decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad(700027, "Client assertion claims are not JSON."))?;
    let signature = decode(parts[2]).ok_or_else(|| bad(700027, "Client assertion signature is not base64url."))?;
    let Some((thumbprint, public_key)) = state.certificates.lock().unwrap().get(client_id).cloned() else {
        return Err(bad(700027, "No certificate is registered for the application."));
    };
    if header["alg"] != "RS256" {
        return Err(bad(700027, "Client assertion alg must be RS256."));
    }
    let x5t = header["x5t"].as_str().and_then(decode);
    if x5t.as_deref() != Some(thumbprint.as_slice()) {
        return Err(bad(700027, "Client assertion contains an invalid thumbprint (x5t)."));
    }
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public_key);
    let input = format!("{}.{}", parts[0], parts[1]);
    if key.verify(input.as_bytes(), &signature).is_err() {
        return Err(bad(700027, "Client assertion failed signature validation."));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if claims["aud"] != token_url {
        return Err(bad(
            700027,
            "Client assertion audience (aud) is not the token endpoint.",
        ));
    }
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err(bad(700027, "Client assertion iss and sub must be the client id."));
    }
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
        return Err(bad(700027, "Client assertion lacks nbf or exp."));
    };
    if nbf > now + 300 || exp < now {
        return Err(bad(700024, "Client assertion is not within its valid time range."));
    }
    let Some(jti) = claims["jti"].as_str() else {
        return Err(bad(700027, "Client assertion lacks jti."));
    };
    let mut seen = state.assertion_ids.lock().unwrap();
    if seen.iter().any(|j| j == jti) {
        return Err(bad(700027, "Client assertion jti was already used."));
    }
    seen.push(jti.to_string());
    Ok(())
}

impl EntraState {
    /// Whether `token` was issued for `scope` and has not expired (what a resource stand-in
    /// checks before serving).
    pub fn valid_now(&self, token: &str, scope: &str) -> bool {
        self.valid(token, scope)
            && self
                .expiry
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|at| std::time::Instant::now() < *at)
    }

    /// Whether `token` was issued for `scope` (what a resource stand-in checks).
    pub fn valid(&self, token: &str, scope: &str) -> bool {
        self.issued
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, s, t)| t == token && s == scope)
    }
}

/// A running token endpoint.
pub struct Entra {
    /// `http://127.0.0.1:PORT`, the authority to configure.
    pub authority: String,
    pub state: Arc<EntraState>,
}

fn aad_error(status: StatusCode, error: &str, code: u64, text: &str) -> Response {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: aaaaaaaa-0000-0000-0000-000000000001\r\nCorrelation ID: aaaaaaaa-0000-0000-0000-000000000002\r\nTimestamp: 2026-01-01 00:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-01-01 00:00:00Z",
        "trace_id": "aaaaaaaa-0000-0000-0000-000000000001",
        "correlation_id": "aaaaaaaa-0000-0000-0000-000000000002",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, Json(body)).into_response()
}

async fn token(
    State(state): State<Arc<EntraState>>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return aad_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90006,
            "The server is temporarily unavailable.",
        );
    }
    let (Some(grant), Some(client_id), Some(scope)) =
        (form.get("grant_type"), form.get("client_id"), form.get("scope"))
    else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type', 'client_id' or 'scope'.",
        );
    };
    if grant != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "Unsupported grant type.",
        );
    }
    if !scope.ends_with("/.default") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The provided value for scope is not valid.",
        );
    }
    let apps = state.apps.lock().unwrap().get(&tenant).cloned();
    let Some(apps) = apps else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    };
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let token_url = format!("http://{host}/{tenant}/oauth2/v2.0/token");
        if let Err(refused) = verify_assertion(&state, &token_url, client_id, assertion) {
            return refused;
        }
        return issue(&state, tenant, client_id, scope);
    }
    let Some(secret) = apps.get(client_id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    };
    match form.get("client_secret") {
        None => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        }
        Some(s) if s != secret => return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        ),
        Some(_) => {}
    }
    issue(&state, tenant, client_id, scope)
}

fn issue(state: &EntraState, tenant: String, client_id: &str, scope: &str) -> Response {
    let mut issued = state.issued.lock().unwrap();
    let access_token = format!("eyJ0eXAiOiJKV1QifQ.synthetic-{}-{}", issued.len(), rand_suffix());
    issued.push((tenant, client_id.to_string(), scope.to_string(), access_token.clone()));
    let expires_in = match state.expires_in.load(Ordering::SeqCst) {
        0 => 3599,
        n => n,
    };
    state.expiry.lock().unwrap().insert(
        access_token.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(expires_in),
    );
    Json(serde_json::json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    }))
    .into_response()
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

impl Entra {
    /// Start on 127.0.0.1 with one app registered in one tenant.
    pub async fn start(tenant: &str, client_id: &str, secret: &str) -> Entra {
        let state = Arc::new(EntraState::default());
        state.apps.lock().unwrap().insert(
            tenant.to_string(),
            HashMap::from([(client_id.to_string(), secret.to_string())]),
        );
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Entra { authority, state }
    }
}
