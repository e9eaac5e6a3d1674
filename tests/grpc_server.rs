//! The server as generic gRPC clients see it: health, reflection, push, argument errors.

mod common;
use common::*;
use netwait_proto::v1::ingest_client::IngestClient;
use netwait_proto::v1::stats_client::StatsClient;
use netwait_proto::v1::{CallEvent, PushRequest, Table1Request, call_event::Ts};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn channel(url: String) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn health_and_reflection_for_generic_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&tmp.path().join("data"));
    rt().block_on(async {
        let mut health = HealthClient::new(channel(server.url()).await);
        for service in ["", "netwait.v1.Stats", "netwait.v1.Ingest"] {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health check")
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let mut refl = ServerReflectionClient::new(channel(server.url()).await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = refl
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("reflection")
            .into_inner();
        let resp = stream
            .message()
            .await
            .expect("message")
            .expect("one response");
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("expected a service list");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            "netwait.v1.Stats",
            "netwait.v1.Ingest",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    });
}

fn ev(call: &str, kind: &str, ts: Ts) -> CallEvent {
    CallEvent {
        call_id: Some(call.into()),
        r#type: kind.into(),
        ts: Some(ts),
        ..Default::default()
    }
}

#[test]
fn push_structured_and_raw_then_query_and_bad_arguments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    rt().block_on(async {
        let mut ingest = IngestClient::connect(server.url()).await.expect("connect");
        let mut answered = ev(
            "p1",
            "answered",
            Ts::TsText("2019-03-04T10:02:00+01:00".into()),
        );
        answered.agent = Some("op1".into());
        let mut with_caller = ev("p1", "offered", Ts::TsMs(1_551_690_000_000)); // 10:00 local
        with_caller.caller = Some("+390364999888".into());
        with_caller.line = Some("prelievi".into());
        let msgs = vec![
            PushRequest {
                events: vec![
                    with_caller,
                    ev(
                        "p1",
                        "announcement_end",
                        Ts::TsText("2019-03-04T10:00:40+01:00".into()),
                    ),
                    answered,
                    // Rejected: no agent on answered; carries a caller that must not be kept.
                    CallEvent {
                        caller: Some("+390364777666".into()),
                        ..ev("p2", "answered", Ts::TsMs(1_551_690_000_000))
                    },
                ],
                source: "integrator-a".into(),
                first_position: 1,
                ..Default::default()
            },
            PushRequest {
                ndjson_lines: vec![
                    // sent with its terminator, which is not part of the line
                    b"{\"call_id\":\"p1\",\"type\":\"ended\",\"ts\":\"2019-03-04T10:05:00+01:00\"}\r\n".to_vec(),
                    br#"{"call_id":"p1","type":"ended","ts":"2019-03-04T09:05:00Z"}"#.to_vec(),
                    b"{broken".to_vec(),
                ],
                source: "integrator-a".into(),
                first_position: 5,
                ..Default::default()
            },
        ];
        let sum = ingest
            .push(tokio_stream::iter(msgs))
            .await
            .expect("push")
            .into_inner();
        assert_eq!((sum.accepted, sum.duplicate, sum.rejected), (4, 1, 2));
        assert_eq!(sum.committed_messages, 2);

        let too_long = PushRequest {
            ndjson_lines: vec![b"{}".to_vec()],
            source: "s".repeat(2_000),
            ..Default::default()
        };
        let err = ingest
            .push(tokio_stream::iter([too_long]))
            .await
            .expect_err("overlong source");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        let mut stats = StatsClient::connect(server.url()).await.expect("connect");
        let t = stats
            .get_table1(Table1Request {
                from: "2019-03-04".into(),
                to: "2019-03-05".into(),
                line: Some("prelievi".into()),
                threshold_s: None,
            })
            .await
            .expect("table1")
            .into_inner();
        assert_eq!((t.answered, t.answered_wait_within_threshold), (1, 1));
        assert_eq!(t.avg_wait_s, Some(80.0));
        assert_eq!(t.avg_talk_s, Some(180.0));
        for (from, to, threshold) in [
            ("2019-03-05", "2019-03-04", None),
            ("2019-3-4", "2019-03-05", None),
            ("2019-03-04", "2019-03-05", Some(-1.0)),
        ] {
            let err = stats
                .get_table1(Table1Request {
                    from: from.into(),
                    to: to.into(),
                    line: None,
                    threshold_s: threshold,
                })
                .await
                .expect_err("invalid");
            assert_eq!(
                err.code(),
                tonic::Code::InvalidArgument,
                "{from} {to} {threshold:?}"
            );
        }
    });
    assert!(server.stop().success());
    // The dead letters say what and why, and keep no clear caller number.
    let out = stdout(&netwait(&[
        "deadletter",
        "--json",
        "--data",
        data.to_str().expect("path"),
    ]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["code"], "missing_field");
    assert_eq!(rows[0]["position"], 4);
    assert_eq!(rows[1]["code"], "invalid_json");
    assert_eq!(rows[1]["position"], 7);
    assert!(
        !out.contains("777666"),
        "clear caller number in the dead letters: {out}"
    );
    let log = std::fs::read(data.join("events.log")).expect("log");
    let clear = |n: &[u8]| log.windows(n.len()).any(|w| w == n);
    assert!(
        !clear(b"390364999888") && !clear(b"390364777666"),
        "clear caller number stored"
    );
}

/// Dead letters carry their line of the file whichever way it came in: imported, or
/// pushed by `netwait push` (which reads the file in chunks of about 1 MiB), past the
/// first chunk too.
#[test]
fn dead_letter_lines_are_the_file_lines_for_import_and_push() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("events.ndjson");
    let mut text = String::new();
    let mut bad = Vec::new();
    for n in 1..=30_000u64 {
        if n % 7_001 == 0 {
            text.push_str("{not json\n");
            bad.push(n);
        } else {
            text.push_str(&format!(
                "{{\"call_id\":\"call-{n:08}\",\"type\":\"offered\",\"line\":\"cup\",\"ts\":\"2019-03-04T09:00:00+01:00\"}}\n"
            ));
        }
    }
    assert!(text.len() > 2 << 20, "the file spans several chunks");
    std::fs::write(&file, &text).expect("write");
    let positions = |data: &std::path::Path| -> Vec<u64> {
        let out = stdout(&netwait(&[
            "deadletter",
            "--json",
            "--data",
            data.to_str().expect("path"),
        ]));
        out.lines()
            .map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).expect("json line");
                row["position"].as_u64().expect("position")
            })
            .collect()
    };
    let imported = tmp.path().join("imported");
    let f = file.to_str().expect("path");
    netwait(&["import", "--data", imported.to_str().expect("path"), f]);
    assert_eq!(positions(&imported), bad);
    let pushed = tmp.path().join("pushed");
    let server = Server::start(&pushed);
    netwait(&["push", "--server", &server.addr, f]);
    assert!(server.stop().success());
    assert_eq!(positions(&pushed), bad);
}

#[test]
fn call_detail_records_pushed_over_grpc_count_as_the_events_they_imply() {
    use netwait_proto::v1::{CallDetail, CdrBooking, Instant, instant::At};
    let at = |t: &str| {
        Some(Instant {
            at: Some(At::Text(t.into())),
        })
    };
    let complete = CallDetail {
        call_id: Some("d1".into()),
        line: Some("prelievi".into()),
        caller: Some("+390364111222".into()),
        offered_at: at("2019-03-04T09:00:00+01:00"),
        announcement_end_at: at("2019-03-04T09:00:40+01:00"),
        queued_at: at("2019-03-04T09:00:40+01:00"),
        answered_at: at("2019-03-04T09:01:40+01:00"),
        agent: Some("op1".into()),
        ended_at: at("2019-03-04T09:04:40+01:00"),
        bookings: vec![CdrBooking {
            kind: "book".into(),
            at: Some(Instant {
                at: Some(At::Ms(1_551_686_640_000)), // 09:04:00+01:00
            }),
        }],
        ..Default::default()
    };
    let waiting = CallDetail {
        call_id: Some("d2".into()),
        line: Some("prelievi".into()),
        offered_at: at("2019-03-04T09:05:00+01:00"),
        announcement_end_at: at("2019-03-04T09:05:40+01:00"),
        queued_at: at("2019-03-04T09:05:40+01:00"),
        ..Default::default()
    };
    let abandoned = CallDetail {
        abandoned_at: at("2019-03-04T09:08:00+01:00"),
        ..waiting.clone()
    };
    let overflow = CallDetail {
        call_id: Some("d3".into()),
        line: Some("prelievi".into()),
        offered_at: at("2019-03-04T09:10:00+01:00"),
        overflow_at: at("2019-03-04T09:10:01+01:00"),
        overflow_reason: Some("queue full".into()),
        ..Default::default()
    };
    let no_instant = CallDetail {
        call_id: Some("d4".into()),
        ..Default::default()
    };
    let msgs = vec![
        PushRequest {
            call_details: vec![complete.clone(), waiting, no_instant],
            source: "integrator-cdr".into(),
            ..Default::default()
        },
        // Pushed again, and the waiting call once more, now complete: only what is new counts.
        PushRequest {
            call_details: vec![complete, abandoned, overflow],
            source: "integrator-cdr".into(),
            first_position: 4,
            ..Default::default()
        },
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&tmp.path().join("data"));
    rt().block_on(async {
        let mut ingest = IngestClient::connect(server.url()).await.expect("connect");
        let sum = ingest
            .push(tokio_stream::iter(msgs))
            .await
            .expect("push")
            .into_inner();
        // 6 + 3 events, 1 rejected record; then 6 + 3 duplicates, 1 + 2 new.
        assert_eq!((sum.accepted, sum.duplicate, sum.rejected), (12, 9, 1));
        let mut stats = StatsClient::connect(server.url()).await.expect("connect");
        let t = stats
            .get_table1(Table1Request {
                from: "2019-03-04".into(),
                to: "2019-03-05".into(),
                line: Some("prelievi".into()),
                threshold_s: None,
            })
            .await
            .expect("table1")
            .into_inner();
        let figures = (t.calls_received, t.answered, t.abandoned, t.overflow);
        assert_eq!(figures, (3, 1, 1, 1));
        assert_eq!(
            (t.bookings, t.avg_wait_s, t.avg_talk_s),
            (1, Some(60.0), Some(180.0))
        );
    });
    assert!(server.stop().success());
}
