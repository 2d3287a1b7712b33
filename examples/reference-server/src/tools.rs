//! The three tools the server offers (`echo`, `add`, `sleep`) and the checking of their arguments.

use std::time::Duration;

use serde_json::{Map, Number, Value, json};

use crate::error::RpcError;

/// The longest `sleep` accepted, so that no argument can ask for a timer the runtime cannot arm.
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// What a checked `tools/call` asks the server to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    /// Answer at once with this text.
    Text(String),
    /// Wait this long without holding up other requests, then answer.
    Sleep(Duration),
}

/// The tool `reference/add_tool` adds (with `--list-changes`); calling it is not offered.
pub fn extra() -> Value {
    json!({
        "name": "extra",
        "description": "Added by reference/add_tool, to show a change of the tool list.",
        "inputSchema": { "type": "object" }
    })
}

/// The `tools` array of a `tools/list` result.
pub fn list() -> Value {
    json!([
        {
            "name": "echo",
            "title": "Echo",
            "description": "Returns the given message unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "message": { "type": "string", "description": "The text to send back." }
                },
                "required": ["message"],
                "additionalProperties": false
            }
        },
        {
            "name": "add",
            "title": "Add",
            "description": "Returns the sum of two numbers.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "a": { "type": "number", "description": "The first addend." },
                    "b": { "type": "number", "description": "The second addend." }
                },
                "required": ["a", "b"],
                "additionalProperties": false
            }
        },
        {
            "name": "sleep",
            "title": "Sleep",
            "description": "Waits the given number of milliseconds, then answers; other requests are served meanwhile, the call can be cancelled, and a progressToken gets progress at each quarter.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "ms": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_SLEEP_MS,
                        "description": "How long to wait, in milliseconds."
                    }
                },
                "required": ["ms"],
                "additionalProperties": false
            }
        }
    ])
}

/// The result of a tool call that produced `text`.
pub fn text_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }] })
}

/// Checks the params of a `tools/call` and says what the call should do.
///
/// # Errors
///
/// Returns invalid params (`-32602`) for an unknown tool, a missing or mistyped argument, or an
/// argument the tool's schema does not list.
pub fn prepare(params: Option<&Map<String, Value>>) -> Result<ToolCall, RpcError> {
    let empty = Map::new();
    let params = params.unwrap_or(&empty);
    let name = match params.get("name") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(RpcError::InvalidParams("tool name must be a string".into())),
        None => return Err(RpcError::InvalidParams("tool name is missing".into())),
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(arguments)) => arguments,
        Some(_) => {
            return Err(RpcError::InvalidParams(format!(
                "tool {name:?}: arguments must be an object"
            )));
        }
    };
    match name {
        "echo" => {
            let args = Arguments::new(name, arguments, &["message"])?;
            let message = args.string("message")?;
            Ok(ToolCall::Text(message.to_owned()))
        }
        "add" => {
            let args = Arguments::new(name, arguments, &["a", "b"])?;
            let sum = add(args.number("a")?, args.number("b")?)
                .ok_or_else(|| args.invalid("the sum is not a finite number"))?;
            Ok(ToolCall::Text(sum))
        }
        "sleep" => {
            let args = Arguments::new(name, arguments, &["ms"])?;
            let ms = args.required("ms")?;
            let ms = ms
                .as_u64()
                .filter(|ms| *ms <= MAX_SLEEP_MS)
                .ok_or_else(|| {
                    args.invalid(&format!(
                        "argument \"ms\" must be an integer from 0 to {MAX_SLEEP_MS}"
                    ))
                })?;
            Ok(ToolCall::Sleep(Duration::from_millis(ms)))
        }
        other => Err(RpcError::InvalidParams(format!(
            "unknown tool {other:?} (this server has: echo, add, sleep)"
        ))),
    }
}

/// Adds two JSON numbers, exactly when both are integers, and returns the sum as text.
fn add(a: &Number, b: &Number) -> Option<String> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = a.checked_add(b)
    {
        return Some(sum.to_string());
    }
    let sum = a.as_f64()? + b.as_f64()?;
    // Display for f64 prints `5` for 5.0 and never uses an exponent, which reads well as a result.
    sum.is_finite().then(|| sum.to_string())
}

/// A tool's arguments, checked against the names its schema allows.
struct Arguments<'a> {
    tool: &'a str,
    values: &'a Map<String, Value>,
}

impl<'a> Arguments<'a> {
    fn new(
        tool: &'a str,
        values: &'a Map<String, Value>,
        allowed: &[&str],
    ) -> Result<Self, RpcError> {
        let args = Self { tool, values };
        // The schemas say `additionalProperties: false`, so the server holds callers to it.
        if let Some(unexpected) = values.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(args.invalid(&format!("unexpected argument {unexpected:?}")));
        }
        Ok(args)
    }

    fn invalid(&self, why: &str) -> RpcError {
        RpcError::InvalidParams(format!("tool {:?}: {why}", self.tool))
    }

    fn required(&self, name: &str) -> Result<&'a Value, RpcError> {
        self.values
            .get(name)
            .ok_or_else(|| self.invalid(&format!("missing required argument {name:?}")))
    }

    fn string(&self, name: &str) -> Result<&'a str, RpcError> {
        self.required(name)?
            .as_str()
            .ok_or_else(|| self.invalid(&format!("argument {name:?} must be a string")))
    }

    fn number(&self, name: &str) -> Result<&'a Number, RpcError> {
        match self.required(name)? {
            Value::Number(number) => Ok(number),
            _ => Err(self.invalid(&format!("argument {name:?} must be a number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(params: Value) -> Result<ToolCall, RpcError> {
        prepare(params.as_object())
    }

    #[test]
    fn tools_answer_as_documented() {
        let echo = call(json!({ "name": "echo", "arguments": { "message": "hi" } }));
        assert_eq!(echo, Ok(ToolCall::Text("hi".into())));
        let add = call(json!({ "name": "add", "arguments": { "a": 2, "b": 3 } }));
        assert_eq!(add, Ok(ToolCall::Text("5".into())));
        let half = call(json!({ "name": "add", "arguments": { "a": 1.5, "b": 2 } }));
        assert_eq!(half, Ok(ToolCall::Text("3.5".into())));
        let sleep = call(json!({ "name": "sleep", "arguments": { "ms": 7 } }));
        assert_eq!(sleep, Ok(ToolCall::Sleep(Duration::from_millis(7))));
    }

    #[test]
    fn big_integers_fall_back_to_floating_point() {
        let sum = call(json!({ "name": "add", "arguments": { "a": i64::MAX, "b": 1 } }));
        assert!(matches!(sum, Ok(ToolCall::Text(_))));
        let overflow = call(json!({ "name": "add", "arguments": { "a": 1e308, "b": 1e308 } }));
        assert!(matches!(overflow, Err(RpcError::InvalidParams(_))));
    }

    #[test]
    fn bad_calls_are_invalid_params() {
        let bad = [
            json!({}),
            json!({ "name": 1 }),
            json!({ "name": "nope" }),
            json!({ "name": "echo" }),
            json!({ "name": "echo", "arguments": [] }),
            json!({ "name": "echo", "arguments": { "message": 1 } }),
            json!({ "name": "echo", "arguments": { "message": "x", "extra": 1 } }),
            json!({ "name": "add", "arguments": { "a": "1", "b": 2 } }),
            json!({ "name": "sleep", "arguments": { "ms": -1 } }),
            json!({ "name": "sleep", "arguments": { "ms": 1.5 } }),
            json!({ "name": "sleep", "arguments": { "ms": MAX_SLEEP_MS + 1 } }),
        ];
        for params in bad {
            let result = call(params.clone());
            assert!(
                matches!(result, Err(RpcError::InvalidParams(_))),
                "{params}: {result:?}"
            );
        }
    }
}
