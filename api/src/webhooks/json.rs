//! Navigation through a parsed JSON payload that knows where it is: every
//! error names the JSON path of the field (built only from this crate's own
//! key names and array indices) and never a value of the payload.

use serde_json::{Map, Value};

use super::WebhookError;

/// What is wrong with a field.
pub(crate) const MISSING: &str = "is missing";
/// The field has another JSON type than the one documented.
pub(crate) const WRONG_TYPE: &str = "has the wrong type";
/// The field has the right type but an unusable value.
pub(crate) const INVALID: &str = "has an invalid value";
/// The field is longer than the canonical form allows.
pub(crate) const TOO_LONG: &str = "is too long";
/// The field is an empty string.
pub(crate) const EMPTY: &str = "is empty";

/// A JSON value and its path in the payload.
#[derive(Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The root of a payload, with an optional path prefix such as
    /// `Message` for a document nested in a string field.
    pub(crate) fn root(value: &'a Value, prefix: &str) -> Self {
        Self {
            value,
            path: prefix.to_owned(),
        }
    }

    /// The value.
    pub(crate) fn value(&self) -> &'a Value {
        self.value
    }

    /// The path of this node (`event-data.recipient`, `[3].email`).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The path of a child field of this node.
    pub(crate) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about this node.
    pub(crate) fn error(&self, problem: &'static str) -> WebhookError {
        WebhookError::Malformed {
            field: if self.path.is_empty() {
                "(root)".to_owned()
            } else {
                self.path.clone()
            },
            problem,
        }
    }

    /// An error about a child field of this node.
    pub(crate) fn child_error(&self, key: &str, problem: &'static str) -> WebhookError {
        WebhookError::Malformed {
            field: self.child_path(key),
            problem,
        }
    }

    /// This node as an object.
    pub(crate) fn object(&self) -> Result<&'a Map<String, Value>, WebhookError> {
        self.value.as_object().ok_or_else(|| self.error(WRONG_TYPE))
    }

    /// A child field; `None` when absent or `null`. An error when this node
    /// is not an object.
    pub(crate) fn get(&self, key: &'static str) -> Result<Option<Node<'a>>, WebhookError> {
        let map = self.object()?;
        Ok(match map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Node {
                value,
                path: self.child_path(key),
            }),
        })
    }

    /// A child field that must be present and not `null`.
    pub(crate) fn req(&self, key: &'static str) -> Result<Node<'a>, WebhookError> {
        self.get(key)?.ok_or_else(|| self.child_error(key, MISSING))
    }

    /// This node as a string.
    pub(crate) fn as_str(&self) -> Result<&'a str, WebhookError> {
        self.value.as_str().ok_or_else(|| self.error(WRONG_TYPE))
    }

    /// This node as a string that is not empty after trimming.
    pub(crate) fn as_text(&self) -> Result<&'a str, WebhookError> {
        let s = self.as_str()?.trim();
        if s.is_empty() {
            return Err(self.error(EMPTY));
        }
        Ok(s)
    }

    /// A required string child, not empty.
    pub(crate) fn req_str(&self, key: &'static str) -> Result<&'a str, WebhookError> {
        self.req(key)?.as_text()
    }

    /// An optional string child: `None` when absent, `null` or empty; an
    /// error when it has another type.
    pub(crate) fn opt_str(&self, key: &'static str) -> Result<Option<&'a str>, WebhookError> {
        match self.get(key)? {
            None => Ok(None),
            Some(n) => {
                let s = n.as_str()?.trim();
                Ok((!s.is_empty()).then_some(s))
            }
        }
    }

    /// An optional child that may be a string or a number, as text (some
    /// providers send numbers as strings and vice versa).
    pub(crate) fn opt_scalar(&self, key: &'static str) -> Result<Option<String>, WebhookError> {
        match self.get(key)? {
            None => Ok(None),
            Some(n) => match n.value {
                Value::String(s) => {
                    let s = s.trim();
                    Ok((!s.is_empty()).then(|| s.to_owned()))
                }
                Value::Number(x) => Ok(Some(x.to_string())),
                _ => Err(n.error(WRONG_TYPE)),
            },
        }
    }

    /// An optional boolean child; `0`/`1` and `"true"`/`"false"` are
    /// accepted too (SendGrid sends `tls` as a number).
    pub(crate) fn opt_bool(&self, key: &'static str) -> Result<Option<bool>, WebhookError> {
        match self.get(key)? {
            None => Ok(None),
            Some(n) => match n.value {
                Value::Bool(b) => Ok(Some(*b)),
                Value::Number(x) => match x.as_u64() {
                    Some(0) => Ok(Some(false)),
                    Some(1) => Ok(Some(true)),
                    _ => Err(n.error(INVALID)),
                },
                Value::String(s) => match s.trim() {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" | "" => Ok(Some(false)),
                    _ => Err(n.error(INVALID)),
                },
                _ => Err(n.error(WRONG_TYPE)),
            },
        }
    }

    /// An optional non-negative integer child, given as a number or a
    /// string of digits.
    pub(crate) fn opt_u64(&self, key: &'static str) -> Result<Option<u64>, WebhookError> {
        match self.get(key)? {
            None => Ok(None),
            Some(n) => match n.value {
                Value::Number(x) => x.as_u64().map(Some).ok_or_else(|| n.error(INVALID)),
                Value::String(s) if s.trim().is_empty() => Ok(None),
                Value::String(s) => s.trim().parse().map(Some).map_err(|_| n.error(INVALID)),
                _ => Err(n.error(WRONG_TYPE)),
            },
        }
    }

    /// This node as a number (or a string holding one).
    pub(crate) fn as_f64(&self) -> Result<f64, WebhookError> {
        match self.value {
            Value::Number(x) => x.as_f64().ok_or_else(|| self.error(INVALID)),
            Value::String(s) => s.trim().parse().map_err(|_| self.error(INVALID)),
            _ => Err(self.error(WRONG_TYPE)),
        }
    }

    /// This node as an array of nodes.
    pub(crate) fn items(&self) -> Result<Vec<Node<'a>>, WebhookError> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.error(WRONG_TYPE))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// An optional array child (`null` or absent is empty).
    pub(crate) fn opt_items(&self, key: &'static str) -> Result<Vec<Node<'a>>, WebhookError> {
        match self.get(key)? {
            None => Ok(Vec::new()),
            Some(n) => n.items(),
        }
    }
}

/// Parses a payload, refusing non-JSON with its line and column only.
pub(crate) fn parse(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body).map_err(|e| WebhookError::InvalidJson {
        line: e.line(),
        column: e.column(),
    })
}

/// Parses a JSON document held in a string field (the SNS `Message`).
pub(crate) fn parse_nested(node: &Node<'_>) -> Result<Value, WebhookError> {
    let text = node.as_str()?;
    serde_json::from_str(text).map_err(|_| node.error("is not a JSON document"))
}
