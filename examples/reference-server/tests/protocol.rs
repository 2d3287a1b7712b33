//! Integration tests of the protocol: both eras, era selection, tools, concurrency, cancellation
//! and the JSON-RPC errors, against the real binary.

mod common;

use common::{
    MODERN, Server, call, error_code, initialize_params, modern, notification, request, text_of,
};
use serde_json::{Value, json};

#[tokio::test]
async fn legacy_handshake_lists_and_calls_the_tools() {
    let mut server = Server::spawn(&[]);
    let init = server
        .request(1, "initialize", initialize_params("2025-06-18"))
        .await;
    let result = &init["result"];
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(
        result["capabilities"],
        json!({ "tools": { "listChanged": false } })
    );
    assert_eq!(result["serverInfo"]["name"], "mcp-reference-server");
    assert!(result["serverInfo"]["version"].is_string());
    assert!(result["instructions"].is_string());
    // The notification gets no answer, so the next line is the ping's.
    server
        .send(&notification("notifications/initialized", json!({})))
        .await;
    let ping = server.request(2, "ping", json!({})).await;
    assert_eq!(ping["result"], json!({}));

    let list = server.request(3, "tools/list", json!({})).await;
    assert!(list["result"].get("resultType").is_none(), "{list}");
    let tools = list["result"]["tools"].as_array().expect("tools array");
    let names: Vec<&str> = tools
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "add", "sleep"]);
    for tool in tools {
        let schema = &tool["inputSchema"];
        assert_eq!(schema["type"], "object", "{tool}");
        assert!(schema["properties"].is_object(), "{tool}");
        assert!(schema["required"].is_array(), "{tool}");
    }
    assert_eq!(
        tools[0]["inputSchema"]["properties"]["message"]["type"],
        "string"
    );
    assert_eq!(tools[1]["inputSchema"]["properties"]["a"]["type"], "number");
    assert_eq!(
        tools[2]["inputSchema"]["properties"]["ms"]["type"],
        "integer"
    );

    let echo = server
        .request(
            4,
            "tools/call",
            call("echo", json!({ "message": "héllo\nworld" })),
        )
        .await;
    assert_eq!(
        echo["result"]["content"],
        json!([{ "type": "text", "text": "héllo\nworld" }])
    );
    let add = server
        .request(5, "tools/call", call("add", json!({ "a": 2, "b": 3 })))
        .await;
    assert_eq!(text_of(&add), "5");
    let add = server
        .request(6, "tools/call", call("add", json!({ "a": 1.5, "b": -4 })))
        .await;
    assert_eq!(text_of(&add), "-2.5");
    let sleep = server
        .request(7, "tools/call", call("sleep", json!({ "ms": 20 })))
        .await;
    assert_eq!(text_of(&sleep), "slept 20 ms");
    assert!(sleep["result"].get("resultType").is_none());
}

#[tokio::test]
async fn initialize_answers_the_latest_version_to_an_unknown_one() {
    let mut server = Server::spawn(&[]);
    let init = server
        .request(1, "initialize", initialize_params("1999-01-01"))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    let old = Server::spawn(&[])
        .request(1, "initialize", initialize_params("2024-11-05"))
        .await;
    assert_eq!(old["result"]["protocolVersion"], "2024-11-05");
}

#[tokio::test]
async fn initialize_without_a_version_is_invalid_params() {
    let mut server = Server::spawn(&[]);
    let answer = server
        .request(1, "initialize", json!({ "capabilities": {} }))
        .await;
    assert_eq!(error_code(&answer), -32602);
}

#[tokio::test]
async fn modern_discover_then_stateless_calls() {
    let mut server = Server::spawn(&["--name", "modern-one"]);
    let discover = server
        .request("d", "server/discover", modern(json!({})))
        .await;
    let info = json!({ "name": "modern-one", "version": env!("CARGO_PKG_VERSION") });
    assert_eq!(
        discover["result"],
        json!({
            "resultType": "complete",
            "supportedVersions": [MODERN],
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": info,
            "_meta": { "io.modelcontextprotocol/serverInfo": info },
            "instructions": discover["result"]["instructions"],
        })
    );
    assert!(discover["result"]["instructions"].is_string());

    let list = server.request("l", "tools/list", modern(json!({}))).await;
    assert_eq!(list["result"]["resultType"], "complete");
    assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(3));
    let echo = server
        .request(
            "e",
            "tools/call",
            modern(call("echo", json!({ "message": "hi" }))),
        )
        .await;
    assert_eq!(echo["result"]["resultType"], "complete");
    assert_eq!(text_of(&echo), "hi");
    let sleep = server
        .request("s", "tools/call", modern(call("sleep", json!({ "ms": 5 }))))
        .await;
    assert_eq!(sleep["result"]["resultType"], "complete");
    assert_eq!(text_of(&sleep), "slept 5 ms");
    // Once modern, results are complete even when a request leaves out `_meta`.
    let add = server
        .request("a", "tools/call", call("add", json!({ "a": 1, "b": 1 })))
        .await;
    assert_eq!(add["result"]["resultType"], "complete");

    let init = server
        .request("i", "initialize", initialize_params("2025-11-25"))
        .await;
    assert_eq!(error_code(&init), -32022);
    assert_eq!(init["error"]["data"], json!({ "supported": [MODERN] }));
}

#[tokio::test]
async fn a_stateless_request_without_discover_latches_modern() {
    let mut server = Server::spawn(&[]);
    let list = server.request(1, "tools/list", modern(json!({}))).await;
    assert_eq!(list["result"]["resultType"], "complete");
    let init = server
        .request(2, "initialize", initialize_params("2025-11-25"))
        .await;
    assert_eq!(error_code(&init), -32022);
}

#[tokio::test]
async fn an_unknown_modern_version_is_unsupported() {
    let mut server = Server::spawn(&[]);
    let mut params = json!({});
    params["_meta"] = json!({ "io.modelcontextprotocol/protocolVersion": "2099-01-01" });
    let answer = server.request(1, "tools/list", params).await;
    assert_eq!(error_code(&answer), -32022);
    assert_eq!(answer["error"]["data"]["supported"], json!([MODERN]));
}

#[tokio::test]
async fn legacy_era_rejects_discover() {
    let mut server = Server::spawn(&["--era", "legacy"]);
    let discover = server
        .request(1, "server/discover", modern(json!({})))
        .await;
    assert_eq!(error_code(&discover), -32601);
    let init = server
        .request(2, "initialize", initialize_params("2025-11-25"))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    // A legacy process ignores the stateless `_meta` rather than marking results.
    let list = server.request(3, "tools/list", modern(json!({}))).await;
    assert!(list["result"].get("resultType").is_none(), "{list}");
}

#[tokio::test]
async fn modern_era_rejects_initialize() {
    let mut server = Server::spawn(&["--era", "modern"]);
    let init = server
        .request(1, "initialize", initialize_params("2025-11-25"))
        .await;
    assert_eq!(error_code(&init), -32022);
    assert_eq!(init["error"]["data"], json!({ "supported": [MODERN] }));
    let list = server.request(2, "tools/list", json!({})).await;
    assert_eq!(list["result"]["resultType"], "complete");
    let discover = server.request(3, "server/discover", json!({})).await;
    assert_eq!(discover["result"]["supportedVersions"], json!([MODERN]));
}

#[tokio::test]
async fn both_latches_legacy_on_initialize() {
    let mut server = Server::spawn(&["--era", "both"]);
    server.handshake().await;
    let discover = server
        .request(1, "server/discover", modern(json!({})))
        .await;
    assert_eq!(error_code(&discover), -32601);
    // A second handshake is still welcome in the era the process latched.
    let again = server
        .request(2, "initialize", initialize_params("2025-03-26"))
        .await;
    assert_eq!(again["result"]["protocolVersion"], "2025-03-26");
}

#[tokio::test]
async fn both_latches_modern_on_discover() {
    let mut server = Server::spawn(&[]);
    let discover = server
        .request(1, "server/discover", modern(json!({})))
        .await;
    assert_eq!(discover["result"]["resultType"], "complete");
    let init = server
        .request(2, "initialize", initialize_params("2025-11-25"))
        .await;
    assert_eq!(error_code(&init), -32022);
    let discover = server.request(3, "server/discover", json!({})).await;
    assert!(discover["result"].is_object());
}

#[tokio::test]
async fn a_sleep_does_not_hold_up_an_echo() {
    let mut server = Server::spawn(&[]);
    server.handshake().await;
    let sleep = request(1, "tools/call", call("sleep", json!({ "ms": 500 })));
    let echo = request(2, "tools/call", call("echo", json!({ "message": "first" })));
    server.send(&sleep).await;
    server.send(&echo).await;
    let first = server.recv().await;
    assert_eq!(first["id"], 2, "the echo must overtake the sleep: {first}");
    assert_eq!(text_of(&first), "first");
    let second = server.recv().await;
    assert_eq!(second["id"], 1);
    assert_eq!(text_of(&second), "slept 500 ms");
}

#[tokio::test]
async fn a_cancelled_sleep_is_never_answered() {
    let mut server = Server::spawn(&[]);
    server.handshake().await;
    server
        .send(&request(
            "short",
            "tools/call",
            call("sleep", json!({ "ms": 150 })),
        ))
        .await;
    server
        .send(&notification(
            "notifications/cancelled",
            json!({ "requestId": "short", "reason": "test" }),
        ))
        .await;
    // Cancelling what is not in flight is ignored.
    server
        .send(&notification(
            "notifications/cancelled",
            json!({ "requestId": 99 }),
        ))
        .await;
    server
        .send(&request(
            "long",
            "tools/call",
            call("sleep", json!({ "ms": 400 })),
        ))
        .await;
    // Had the short sleep survived, its answer would come first.
    let next = server.recv().await;
    assert_eq!(next["id"], "long", "{next}");
    assert_eq!(text_of(&next), "slept 400 ms");
}

#[tokio::test]
async fn malformed_lines_get_json_rpc_errors() {
    let mut server = Server::spawn(&[]);
    let cases: [(&[u8], i64, Value); 7] = [
        (b"this is not json\n", -32700, Value::Null),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}\n",
            -32700,
            Value::Null,
        ),
        (b"{\"jsonrpc\":\"2.0\",\"id\":1,\n", -32700, Value::Null),
        (
            b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]\n",
            -32600,
            Value::Null,
        ),
        (b"42\n", -32600, Value::Null),
        (b"{\"id\":5,\"method\":\"ping\"}\n", -32600, json!(5)),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}\n",
            -32600,
            Value::Null,
        ),
    ];
    for (line, code, id) in cases {
        server.send_raw(line).await;
        let answer = server.recv().await;
        assert_eq!(
            error_code(&answer),
            code,
            "{}: {answer}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    // Blank lines, responses and unknown notifications get no answer at all.
    server.send_raw(b"\n   \r\n").await;
    server
        .send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n")
        .await;
    server
        .send(&notification("notifications/unknown", json!({})))
        .await;

    let unknown = server.request("x-1", "no/such/method", json!({})).await;
    assert_eq!(error_code(&unknown), -32601);
    let bad_params = server.request(10, "tools/list", json!([1, 2])).await;
    assert_eq!(error_code(&bad_params), -32602);
    let unknown_tool = server
        .request(11, "tools/call", call("nope", json!({})))
        .await;
    assert_eq!(error_code(&unknown_tool), -32602);
    assert!(
        unknown_tool["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let bad_args = server
        .request(12, "tools/call", call("add", json!({ "a": "1", "b": 2 })))
        .await;
    assert_eq!(error_code(&bad_args), -32602);
    let missing = server
        .request(13, "tools/call", call("echo", json!({})))
        .await;
    assert_eq!(error_code(&missing), -32602);
    let negative = server
        .request(14, "tools/call", call("sleep", json!({ "ms": -5 })))
        .await;
    assert_eq!(error_code(&negative), -32602);

    // Ids come back exactly as they were sent.
    let big = server.request(u64::MAX, "ping", json!({})).await;
    assert_eq!(big["result"], json!({}));
    let text = server.request("007", "ping", json!({})).await;
    assert_eq!(text["id"], "007");
}
