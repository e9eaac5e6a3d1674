//! The mapping rules, one by one.

use super::*;
use netwait_aggregator::domain::validate::validate;

/// (type, ts in s, call_id, line, agent, reason) of every event the inputs imply.
type Seen = (String, f64, String, String, String, String);

fn decode_all(inputs: &[&str], cfg: &QueueLogConfig) -> Vec<Vec<Seen>> {
    let p = Pseudonymizer::new([9; 32]);
    let items = inputs
        .iter()
        .map(|t| rows::read_file_layout(t.as_bytes()))
        .collect();
    decode(items, cfg, &p)
        .into_iter()
        .map(|units| {
            units
                .into_iter()
                .flat_map(|u| u.decoded.expect("readable"))
                .map(|raw| {
                    let e = validate(raw, &p).expect("valid");
                    let s =
                        |v: Option<std::borrow::Cow<'_, str>>| v.unwrap_or_default().into_owned();
                    (
                        e.kind.as_str().to_owned(),
                        e.ts as f64 / 1e3,
                        s(e.call_id),
                        s(e.line),
                        s(e.agent),
                        s(e.reason),
                    )
                })
                .collect()
        })
        .collect()
}

fn one(text: &str) -> Vec<Seen> {
    decode_all(&[text], &QueueLogConfig::default()).remove(0)
}

fn ev(kind: &str, ts: f64, call: &str, line: &str, agent: &str, reason: &str) -> Seen {
    (
        kind.into(),
        ts,
        call.into(),
        line.into(),
        agent.into(),
        reason.into(),
    )
}

#[test]
fn enterqueue_offers_at_the_callid_epoch_and_queues_at_its_time() {
    let got = one(
        "1000|990.5|500|NONE|ENTERQUEUE||3331234567|1\n1009|990.5|500|SIP/1|CONNECT|9|x|2\n1050|990.5|500|SIP/1|COMPLETECALLER|9|41|1\n",
    );
    assert_eq!(
        got,
        vec![
            ev("offered", 990.0, "990.5", "500", "", ""),
            ev("queued", 1000.0, "990.5", "", "", ""),
            ev("announcement_end", 1000.0, "990.5", "", "", ""),
            ev("answered", 1009.0, "990.5", "", "SIP/1", ""),
            ev("ended", 1050.0, "990.5", "", "", ""),
        ]
    );
    // A prefix after the row, or none at all: the row's time.
    assert_eq!(one("1000|2000.1|q|NONE|ENTERQUEUE||1|1\n")[0].1, 1000.0);
    assert_eq!(one("1000|abc|q|NONE|ENTERQUEUE||1|1\n")[0].1, 1000.0);
    assert_eq!(one("1000|-5.1|q|NONE|ENTERQUEUE||1|1\n")[0].1, 1000.0);
}

#[test]
fn in_queue_announcement_ends_after_its_length() {
    let cfg = QueueLogConfig {
        announcement: Announcement::InQueue(40 * SECOND),
        ..QueueLogConfig::default()
    };
    let got = decode_all(&["1000|1000.1|q|NONE|ENTERQUEUE||1|1\n"], &cfg).remove(0);
    assert_eq!(got[2], ev("announcement_end", 1040.0, "1000.1", "", "", ""));
}

#[test]
fn refusals_overflow_with_their_verb_and_offer_calls_that_never_joined() {
    let got = one(
        "1000|999.1|q|NONE|FULL|\n1001|1001.2|q|NONE|JOINEMPTY|\n1002|1002.3|q|NONE|DIVERT_HOLDTIME|\n",
    );
    assert_eq!(
        got,
        vec![
            ev("offered", 999.0, "999.1", "q", "", ""),
            ev("overflow", 1000.0, "999.1", "", "", "FULL"),
            ev("offered", 1001.0, "1001.2", "q", "", ""),
            ev("overflow", 1001.0, "1001.2", "", "", "JOINEMPTY"),
            ev("offered", 1002.0, "1002.3", "q", "", ""),
            ev("overflow", 1002.0, "1002.3", "", "", "DIVERT_HOLDTIME"),
        ]
    );
    // A call that joined and timed out: overflow only, its offered is its ENTERQUEUE's.
    let got =
        one("1000|1000.1|q|NONE|ENTERQUEUE||1|1\n1300|1000.1|q|NONE|EXITWITHTIMEOUT|1|1|300\n");
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[3],
        ev("overflow", 1300.0, "1000.1", "", "", "EXITWITHTIMEOUT")
    );
}

#[test]
fn transfers_end_and_exitwithkey_abandons() {
    for verb in [
        "BLINDTRANSFER",
        "ATTENDEDTRANSFER",
        "TRANSFER",
        "COMPLETEAGENT",
    ] {
        assert_eq!(
            one(&format!("7|7.1|q|a|{verb}|x|1|2\n")),
            vec![ev("ended", 7.0, "7.1", "", "", "")]
        );
    }
    // Wherever they stand: an end before its CONNECT still maps.
    let got = one("9|7.1|q|a|CONNECT|1|x|1\n8|7.1|q|a|COMPLETEAGENT|1|1|1\n");
    assert_eq!(
        got.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["answered", "ended"]
    );
    assert_eq!(
        one("7|7.1|q|NONE|EXITWITHKEY|5|1|1|3\n"),
        vec![ev("abandoned", 7.0, "7.1", "", "", "")]
    );
}

#[test]
fn only_the_earliest_enterqueue_of_a_callid_makes_its_offer_in_any_file_order() {
    // Re-entered into queue "a" (a smaller name) after queue "b": the first one counts.
    let first = "1000|990.1|b|NONE|ENTERQUEUE||1|1\n1100|990.1|b|NONE|EXITWITHTIMEOUT|1|1|100\n";
    let second = "1101|990.1|a|NONE|ENTERQUEUE||1|1\n1110|990.1|a|op|CONNECT|9|x|1\n";
    for order in [[first, second], [second, first]] {
        let all: Vec<Seen> = decode_all(&order, &QueueLogConfig::default()).concat();
        let offers: Vec<_> = all
            .iter()
            .filter(|e| e.0 != "answered" && e.0 != "overflow")
            .collect();
        assert_eq!(
            offers,
            [
                &ev("offered", 990.0, "990.1", "b", "", ""),
                &ev("queued", 1000.0, "990.1", "", "", ""),
                &ev("announcement_end", 1000.0, "990.1", "", "", "")
            ],
            "{order:?}"
        );
    }
}

#[test]
fn queue_and_did_lines_by_configuration() {
    let cfg = QueueLogConfig {
        queue_lines: [("500".to_owned(), "cup".to_owned())].into(),
        did_lines: [("7777".to_owned(), "prelievi".to_owned())].into(),
        ..QueueLogConfig::default()
    };
    let text = "10|10.1|500|NONE|DID|7777\n10|10.1|500|NONE|ENTERQUEUE||1|1\n20|20.1|500|NONE|DID|8888\n20|20.1|500|NONE|ENTERQUEUE||1|1\n30|30.1|600|NONE|ENTERQUEUE||1|1\n";
    let lines: Vec<_> = decode_all(&[text], &cfg)
        .remove(0)
        .into_iter()
        .filter(|e| e.0 == "offered")
        .map(|e| e.3)
        .collect();
    assert_eq!(lines, ["prelievi", "cup", "600"]);
    // A DID row alone makes no call.
    assert!(decode_all(&["10|10.1|500|NONE|DID|7777\n"], &cfg)[0].is_empty());
}

#[test]
fn agent_verbs_are_presence_events_and_the_rest_is_skipped() {
    let got = one(
        "1|MANAGER|500|SIP/1001|ADDMEMBER|\n2|NONE|NONE|karthik|UNPAUSEALL|\n3|NONE|500|karthik|PAUSE|\n4|MANAGER|500|SIP/1001|REMOVEMEMBER|\n5|NONE|NONE|NONE|QUEUESTART|\n6|1.1|q|a|RINGNOANSWER|1000\n7|1.1|q|a|OUTDIAL|3\n8|1.1|q|a|SOMETHINGNEW|3\n9|NONE|NONE|NONE|UNPAUSEALL|\n",
    );
    assert_eq!(
        got,
        vec![
            ev("agent_login", 1.0, "", "", "SIP/1001", ""),
            ev("agent_resume", 2.0, "", "", "karthik", ""),
            ev("agent_pause", 3.0, "", "", "karthik", ""),
            ev("agent_logout", 4.0, "", "", "SIP/1001", ""),
        ]
    );
}

#[test]
fn the_same_row_read_again_has_the_same_ids() {
    let p = Pseudonymizer::new([9; 32]);
    let ids = |text: &'static str| -> Vec<String> {
        let items = vec![rows::read_file_layout(text.as_bytes())];
        decode(items, &QueueLogConfig::default(), &p)
            .remove(0)
            .into_iter()
            .flat_map(|u| u.decoded.expect("readable"))
            .map(|e| match e.event_id {
                Some(RawValue::Str(s)) => s.into_owned(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let a = ids("1000|990.5|500|NONE|ENTERQUEUE||3331234567|1\n");
    let b = ids("5|x|q|NONE|QUEUESTART|\n1000|990.5|500|NONE|ENTERQUEUE||3331234567|1\r\n");
    assert_eq!(a, b);
    assert_eq!(a.len(), 3);
    assert!(
        a.iter()
            .all(|id| !id.contains("3331234567") && id.len() <= 128)
    );
}
