//! The HTTP client: ingest requests, timeline queries, the server's histogram.

use super::*;

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// One request; the status and body.
pub(crate) async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    key: &str,
    body: Option<String>,
) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(body.map_or_else(Bytes::new, Bytes::from)))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

/// The server's own latency histogram of `GET /v1/messages/{id}`, from
/// `/metrics` on the metrics listener at `metrics_base`: (upper bound in
/// seconds, cumulative count) per bucket.
pub(crate) async fn timeline_histogram(client: &HttpClient, metrics_base: &str) -> Vec<(f64, u64)> {
    let Ok((200, body)) = send(client, "GET", &format!("{metrics_base}/metrics"), "", None).await
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| {
            l.starts_with("mailledger_http_request_duration_seconds_bucket")
                && l.contains(r#"route="/v1/messages/{id}""#)
                && l.contains(r#"method="GET""#)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// POSTs one batch; `Ok(())` when all of it was appended.
pub(crate) async fn ingest(
    client: &HttpClient,
    base: &str,
    key: &str,
    body: String,
) -> Result<(), String> {
    let url = format!("{base}/v1/events");
    let (status, body) = send(client, "POST", &url, key, Some(body)).await?;
    let text = String::from_utf8_lossy(&body);
    if status == 200 && text.contains(&format!(r#""appended":{BATCH}"#)) {
        Ok(())
    } else {
        Err(format!(
            "{status} {}",
            text.chars().take(300).collect::<String>()
        ))
    }
}

/// Polls `GET path` until it answers 200, for at most `limit`.
pub(crate) async fn wait_for(
    client: &HttpClient,
    base: &str,
    key: &str,
    path: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let url = format!("{base}{path}");
    loop {
        match send(client, "GET", &url, key, None).await {
            Ok((200, _)) => return start.elapsed(),
            other => assert!(
                start.elapsed() < limit,
                "{path} not answered 200 within {limit:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}
