//! Requests at the edges of the protocols, sent raw: what the real services accept is
//! accepted, what they refuse is refused with their answer, and nothing a client sends can
//! break a simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use jilo_sim::apify::{ApifySim, TOKEN};
use jilo_sim::google::GoogleSim;
use serde_json::{json, Value};

async fn session(sim: &GoogleSim, total: usize) -> String {
    let (access, _) = sim.issue_tokens();
    let start = common::http()
        .post(format!("{}/upload/youtube/v3/videos", sim.url))
        .query(&[("uploadType", "resumable"), ("part", "snippet,status")])
        .bearer_auth(&access)
        .header("content-type", "application/json; charset=UTF-8")
        .header("x-upload-content-length", total.to_string())
        .header("x-upload-content-type", "video/mp4")
        .body(
            json!({"snippet": {"title": "edge"}, "status": {"privacyStatus": "private"}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    start.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn youtube_takes_a_whole_file_without_content_range_and_refuses_a_backward_range() {
    let sim = GoogleSim::start().await.unwrap();
    let http = common::http();
    let body = vec![7u8; 1000];
    // One PUT of the whole file, no Content-Range and no Authorization: the session URI is
    // the credential.
    let uri = session(&sim, body.len()).await;
    let done = http
        .put(&uri)
        .header("content-type", "video/mp4")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201);
    let video: Value = done.json().await.unwrap();
    assert!(video["id"].as_str().is_some());
    // Asked again, the finished upload answers as its last chunk did.
    let again = http
        .put(&uri)
        .header("content-range", format!("bytes */{}", body.len()))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);

    let uri = session(&sim, body.len()).await;
    for range in ["bytes 9-3/1000", "bytes 0-18446744073709551615/1000"] {
        let refused = http
            .put(&uri)
            .header("content-type", "video/mp4")
            .header("content-range", range)
            .body(vec![1u8; 7])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{range}");
    }
    // The simulator is still there.
    assert_eq!(
        http.put(&uri)
            .header("content-range", "bytes */1000")
            .header("content-length", "0")
            .send()
            .await
            .unwrap()
            .status(),
        308
    );
}

#[tokio::test]
async fn apify_keeps_a_finished_run_finished_and_survives_absurd_inputs() {
    let sim = ApifySim::start().await.unwrap();
    let http = common::http();
    let start: Value = http
        .post(format!("{}/v2/acts/GdWCkxBtKWOsKjdch/runs", sim.url))
        .bearer_auth(TOKEN)
        .json(&json!({"hashtags": ["robots"], "resultsPerPage": 5,
            "oldestPostDateUnified": "300000000000000 days"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = start["data"]["id"].as_str().unwrap().to_owned();
    let dataset = start["data"]["defaultDatasetId"]
        .as_str()
        .unwrap()
        .to_owned();
    // A run id alone reads the run (no token).
    let read: Value = http
        .get(format!("{}/v2/actor-runs/{run}?waitForFinish=60", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["data"]["status"], "SUCCEEDED");
    let aborted: Value = http
        .post(format!("{}/v2/actor-runs/{run}/abort", sim.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        aborted["data"]["status"], "SUCCEEDED",
        "an ended run stays ended"
    );
    let items: Vec<Value> = http
        .get(format!(
            "{}/v2/datasets/{dataset}/items?clean=true",
            sim.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(items.len(), 5);
    assert!(items
        .iter()
        .all(|i| i["id"].as_str().unwrap().parse::<i64>().is_ok()));
}
