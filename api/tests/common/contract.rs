//! The OpenAPI document as a contract the tests hold responses to.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use super::{Env, Reply};

/// The served document, and a validator per response schema.
pub struct Contract {
    pub doc: Value,
}

/// `text` as a JSON pointer token.
fn token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    pub async fn of(e: &Env) -> Self {
        let r = e.call(Method::GET, "/openapi.json", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        let doc = r.json();
        assert_eq!(doc["openapi"], "3.1.0");
        Self { doc }
    }

    /// Asserts that `r`, the answer to `method` on the documented `path`,
    /// is documented (its status and content type) and that its body is
    /// valid against the documented schema.
    pub fn check(&self, method: &str, path: &str, r: &Reply) {
        let op = format!("/paths/{}/{}", token(path), method.to_lowercase());
        let status = r.status.as_u16().to_string();
        let what = format!("{method} {path} answered {status}");
        assert!(
            self.doc.pointer(&op).is_some(),
            "{method} {path} is not documented"
        );
        let response = format!("{op}/responses/{status}");
        let documented = self
            .doc
            .pointer(&response)
            .unwrap_or_else(|| panic!("{what}, which is not documented: {}", r.text()));
        if r.body.is_empty() {
            assert!(
                documented.get("content").is_none(),
                "{what} with no body, but a body is documented"
            );
            return;
        }
        let content_type = r.content_type().split(';').next().unwrap().trim();
        let schema = format!("{response}/content/{}/schema", token(content_type));
        assert!(
            self.doc.pointer(&schema).is_some(),
            "{what} with {content_type}, which is not documented for it"
        );
        if content_type == "application/x-ndjson" {
            // A stream of JSON objects, one per line (documented as text).
            for line in r.text().lines() {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|_| panic!("{what}: a line that is not JSON"));
                assert!(v.is_object(), "{what}: a line that is not an object");
            }
            return;
        }
        // The whole document is the schema's root, so its `$ref`s into
        // `#/components/schemas` resolve; the root's own `$ref` selects the
        // response's schema, copied into `$defs` (other top-level keys are
        // not keywords).
        let mut root = self.doc.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["$defs"] = json!({"response": self.doc.pointer(&schema).unwrap().clone()});
        root["$ref"] = json!("#/$defs/response");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema of {what} does not compile: {e}"));
        let body: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| panic!("{what} with a body that is not JSON"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the body breaks its schema:\n{}\n{body:#}",
            errors.join("\n")
        );
    }

    /// Every operation's request body schema (a `$ref` or inline), by
    /// operation.
    pub fn request_schemas(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if let Some(s) = op.pointer("/requestBody/content/application~1json/schema") {
                    out.push((format!("{method} {path}"), s.clone()));
                }
            }
        }
        out
    }

    pub fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => self.doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => schema,
        }
    }
}

/// Calls `method path` (the concrete `uri`) and checks the answer against
/// the contract.
pub async fn call(
    e: &Env,
    c: &Contract,
    method: Method,
    path: &str,
    uri: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let r = e.call(method.clone(), uri, key, body).await;
    c.check(method.as_str(), path, &r);
    r
}

pub async fn raw(e: &Env, method: Method, uri: &str, key: &str, body: &str, ct: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body.to_owned()))
        .unwrap();
    e.send(req).await
}
