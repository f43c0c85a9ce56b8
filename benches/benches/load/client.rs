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

/// Polls `GET /v1/admin/projections` (with the admin key) until every
/// projection has applied the whole log, for at most `limit`; how long
/// that took, or the last answer when they had not by then.
pub(crate) async fn caught_up(
    client: &HttpClient,
    base: &str,
    admin_key: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let url = format!("{base}/v1/admin/projections");
    loop {
        let answer = send(client, "GET", &url, admin_key, None).await;
        let lag = match &answer {
            Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v["projections"].as_array().map(|ps| {
                        ps.iter()
                            .map(|p| p["lag"].as_u64().unwrap_or(u64::MAX))
                            .max()
                    })
                })
                .flatten(),
            _ => None,
        };
        if lag == Some(0) {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(match answer {
                Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
                Err(e) => e.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}
