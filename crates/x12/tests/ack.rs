//! The 997 builder: `FunctionalAck997::for_group` from the diagnostics of a group.

use crossdock_x12::sets::SegmentError;
use crossdock_x12::{AckStatus, DiagCode, Diagnostic, Document, FunctionalAck997, TypedSet, parse};

const ISA: &str = "ISA*00*          *00*          *ZZ*BUYER          *ZZ*SELLER         *240105*1200*U*00401*000000101*0*P*>~\n";

/// An interchange with one 846 group holding `sets` (each the segments between ST and SE),
/// with correct counts.
fn interchange(sets: &[&[&str]]) -> String {
    let mut text = format!("{ISA}GS*IB*BUYER*SELLER*20240105*1200*7*X*004010~\n");
    for (k, body) in sets.iter().enumerate() {
        text.push_str(&format!("ST*846*{:04}~\n", k + 1));
        for segment in *body {
            text.push_str(segment);
            text.push_str("~\n");
        }
        text.push_str(&format!("SE*{}*{:04}~\n", body.len() + 2, k + 1));
    }
    text.push_str(&format!("GE*{}*7~\nIEA*1*000000101~\n", sets.len()));
    text
}

const GOOD: &[&str] = &[
    "BIA*00*DD*INV-1*20240105",
    "LIN*1*VN*SKU-1",
    "QTY*33*10*EA",
    "LIN*2*VN*SKU-2",
    "QTY*33*4*EA",
    "CTT*2",
];

/// Parses, reads every set, and acknowledges the first group with `extra` diagnostics added.
fn acknowledge(text: &str, extra: &[Diagnostic]) -> (Document, FunctionalAck997) {
    let document = parse(text.as_bytes()).expect("parses");
    let mut diagnostics = document.diagnostics.clone();
    for (_, set) in document.sets() {
        TypedSet::read(set, &mut diagnostics);
    }
    diagnostics.extend_from_slice(extra);
    let ack = FunctionalAck997::for_group(&document.interchanges[0].groups[0], &diagnostics);
    (document, ack)
}

#[test]
fn a_clean_group_is_accepted() {
    let (_, ack) = acknowledge(&interchange(&[GOOD, GOOD]), &[]);
    assert_eq!(
        (ack.functional_id.as_str(), ack.group_control_number),
        ("IB", 7)
    );
    assert_eq!(ack.status, AckStatus::Accepted);
    assert_eq!(
        (ack.sets_included, ack.sets_received, ack.sets_accepted),
        (2, 2, 2)
    );
    let controls: Vec<&str> = ack.sets.iter().map(|s| s.control_number.as_str()).collect();
    assert_eq!(controls, ["0001", "0002"]);
    assert!(
        ack.sets
            .iter()
            .all(|s| s.status == AckStatus::Accepted && s.segment_errors.is_empty())
    );
}

#[test]
fn an_application_warning_accepts_the_set_with_errors() {
    // LIN at file segment 5 (ISA 1, GS 2, ST 3, BIA 4): its LIN03 item is unknown to the caller.
    let unknown = Diagnostic::warning(DiagCode::ElementValue, "item SKU-1 is unknown")
        .at(5, "LIN")
        .element(3);
    let (_, ack) = acknowledge(&interchange(&[GOOD]), &[unknown]);
    let set = &ack.sets[0];
    assert_eq!(set.status, AckStatus::AcceptedWithErrors);
    assert_eq!(set.errors, ["5"]);
    assert_eq!(set.segment_errors.len(), 1);
    let error: &SegmentError = &set.segment_errors[0];
    assert_eq!(error.segment_id, "LIN");
    assert_eq!(error.position, 3, "ST is 1, BIA 2, LIN 3");
    assert_eq!(error.loop_id.as_deref(), Some("LIN"));
    assert_eq!(error.code.as_deref(), Some("8"));
    let element = &error.element_errors[0];
    assert_eq!((element.position, element.code.as_str()), (3, "7"));
    assert_eq!(element.bad_value.as_deref(), Some("SKU-1"));
    assert_eq!(ack.status, AckStatus::AcceptedWithErrors);
    assert_eq!(ack.sets_accepted, 1);
}

#[test]
fn an_error_rejects_its_set_only() {
    let bad: &[&str] = &[
        "BIA*00*DD*INV-2*20240105",
        "LIN*1*VN*SKU-1",
        "QTY*33*ten*EA",
        "DTM*405*20241350",
        "CTT*1",
    ];
    let (_, ack) = acknowledge(&interchange(&[GOOD, bad]), &[]);
    assert_eq!(ack.sets[0].status, AckStatus::Accepted);
    let set = &ack.sets[1];
    assert_eq!(set.status, AckStatus::Rejected);
    let positions: Vec<(&str, u32)> = set
        .segment_errors
        .iter()
        .map(|e| (e.segment_id.as_str(), e.position))
        .collect();
    assert_eq!(positions, [("QTY", 4), ("DTM", 5)]);
    let codes: Vec<(u32, &str)> = set
        .segment_errors
        .iter()
        .flat_map(|e| &e.element_errors)
        .map(|e| (e.position, e.code.as_str()))
        .collect();
    assert_eq!(codes, [(2, "6"), (2, "8")], "not a number, not a date");
    assert_eq!(ack.status, AckStatus::PartiallyAccepted);
    assert_eq!((ack.sets_received, ack.sets_accepted), (2, 1));
}

#[test]
fn trailer_problems_are_set_level_codes() {
    let text = interchange(&[GOOD]).replace("SE*8*0001", "SE*9*0002");
    let (_, ack) = acknowledge(&text, &[]);
    let set = &ack.sets[0];
    assert_eq!(set.status, AckStatus::Rejected);
    assert!(set.segment_errors.is_empty());
    assert_eq!(set.errors, ["4", "3"], "count, then control number");
    assert_eq!(ack.status, AckStatus::Rejected);
}

#[test]
fn a_missing_beginning_segment_is_an_ak3() {
    let (_, ack) = acknowledge(&interchange(&[&["LIN*1*VN*SKU-1", "QTY*33*1*EA"]]), &[]);
    let error = &ack.sets[0].segment_errors[0];
    assert_eq!((error.segment_id.as_str(), error.position), ("BIA", 2));
    assert_eq!(error.code.as_deref(), Some("3"));
    assert_eq!(ack.sets[0].status, AckStatus::Rejected);
}

#[test]
fn a_missing_se_and_group_errors_reject_the_group() {
    let text = interchange(&[GOOD])
        .replace("SE*8*0001~\n", "")
        .replace("GE*1*7", "GE*3*8");
    let (_, ack) = acknowledge(&text, &[]);
    assert_eq!(ack.sets[0].errors.first().map(String::as_str), Some("2"));
    assert_eq!(ack.sets[0].status, AckStatus::Rejected);
    assert_eq!(ack.status, AckStatus::Rejected);
    assert_eq!(ack.errors, ["5", "4"]);
    assert_eq!(ack.sets_accepted, 0);
}

#[test]
fn leniency_warnings_are_not_reported() {
    // Lowercase ids and trailing spaces are read as written, with warnings.
    let text = interchange(&[GOOD]).replace("LIN*1*VN*SKU-1", "lin*1*VN*SKU-1  ");
    let (document, ack) = acknowledge(&text, &[]);
    assert!(!document.diagnostics.is_empty());
    assert_eq!(ack.sets[0].status, AckStatus::Accepted);
    assert_eq!(ack.status, AckStatus::Accepted);
}

#[test]
fn the_line_loop_and_the_n1_loop_are_named() {
    let body: &[&str] = &[
        "BIA*00*DD*INV-3*20240105",
        "N1*WH*Dallas*92*DAL",
        "N4*Dallas*TEX",
        "LIN*1*VN*SKU-1",
        "QTY*33*1*EACH",
        "CTT*1",
    ];
    let (_, ack) = acknowledge(&interchange(&[body]), &[]);
    let loops: Vec<(&str, Option<&str>, u32, &str)> = ack.sets[0]
        .segment_errors
        .iter()
        .map(|e| {
            let code = e.element_errors.first().map_or("", |x| x.code.as_str());
            (
                e.segment_id.as_str(),
                e.loop_id.as_deref(),
                e.position,
                code,
            )
        })
        .collect();
    assert_eq!(
        loops,
        [("N4", Some("N1"), 4, "5"), ("QTY", Some("LIN"), 6, "5")],
        "state and unit codes too long"
    );
}

/// Every group's 997 of the first interchange, through `for_interchange`.
fn acknowledge_all(text: &str) -> (Document, Vec<FunctionalAck997>) {
    let document = parse(text.as_bytes()).expect("parses");
    let mut diagnostics = document.diagnostics.clone();
    for (_, set) in document.sets() {
        TypedSet::read(set, &mut diagnostics);
    }
    let acks = FunctionalAck997::for_interchange(&document.interchanges[0], &diagnostics);
    (document, acks)
}

/// Two groups: the first (GS06 7) holds two 846s, the second (GS06 8) one.
fn two_groups() -> String {
    let one = interchange(&[GOOD, GOOD]);
    let group = |n: u32| {
        format!(
            "GS*IB*BUYER*SELLER*20240105*1200*{n}*X*004010~\nST*846*0001~\n{}~\nSE*{}*0001~\nGE*1*{n}~\n",
            GOOD.join("~\n"),
            GOOD.len() + 2
        )
    };
    one.replace(
        "IEA*1*000000101~\n",
        &format!("{}IEA*2*000000101~\n", group(8)),
    )
}

fn statuses(acks: &[FunctionalAck997]) -> Vec<(AckStatus, Vec<AckStatus>, u32)> {
    acks.iter()
        .map(|a| {
            (
                a.status.clone(),
                a.sets.iter().map(|s| s.status.clone()).collect(),
                a.sets_accepted,
            )
        })
        .collect()
}

use AckStatus::{Accepted as A, Rejected as R};

#[test]
fn a_clean_interchange_accepts_every_group() {
    let (document, acks) = acknowledge_all(&two_groups());
    assert!(!document.has_errors(), "{:?}", document.diagnostics);
    assert!(
        document.interchanges[0]
            .envelope_errors(&document.diagnostics)
            .is_empty()
    );
    assert_eq!(statuses(&acks), [(A, vec![A, A], 2), (A, vec![A], 1)]);
}

#[test]
fn an_iea_control_number_mismatch_rejects_every_group_of_the_interchange() {
    let text = two_groups().replace("IEA*2*000000101", "IEA*2*000000102");
    let (document, acks) = acknowledge_all(&text);
    let errors = document.interchanges[0].envelope_errors(&document.diagnostics);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].segment_id.as_deref(), Some("IEA"));
    assert_eq!(errors[0].code, DiagCode::ControlNumber);
    assert_eq!(statuses(&acks), [(R, vec![R, R], 0), (R, vec![R], 0)]);
    // No group's own envelope is wrong: no AK905 code is invented.
    assert!(acks.iter().all(|a| a.errors.is_empty()));
    // The group-level view alone would have accepted them.
    let group = &document.interchanges[0].groups[0];
    assert_eq!(
        FunctionalAck997::for_group(group, &document.diagnostics).status,
        A
    );
}

#[test]
fn an_iea01_count_a_missing_iea_and_data_after_the_iea_reject_the_interchange() {
    let cases = [
        two_groups().replace("IEA*2*", "IEA*3*"),
        two_groups().replace("IEA*2*000000101~\n", ""),
        two_groups() + "LIN*9*VN*SKU-9~\n",
        two_groups().replace(
            "GS*IB*BUYER*SELLER*20240105*1200*8",
            "REF*ZZ*X~\nGS*IB*BUYER*SELLER*20240105*1200*8",
        ),
        two_groups().replace("*240105*1200*U*", "*241305*1200*U*"),
    ];
    for text in cases {
        let (document, acks) = acknowledge_all(&text);
        let errors = document.interchanges[0].envelope_errors(&document.diagnostics);
        assert!(!errors.is_empty(), "{text}: {:?}", document.diagnostics);
        assert!(
            acks.iter().all(|a| a.status == R && a.sets_accepted == 0),
            "{text}"
        );
        assert!(
            acks.iter().flat_map(|a| &a.sets).all(|s| s.status == R),
            "{text}"
        );
    }
    // A missing IEA is reported on the ISA, the envelope it belongs to.
    let (document, _) = acknowledge_all(&two_groups().replace("IEA*2*000000101~\n", ""));
    let missing = document.interchanges[0].envelope_errors(&document.diagnostics);
    assert_eq!(missing[0].segment, Some(1), "{missing:?}");
    assert!(missing[0].message.contains("has no IEA"), "{missing:?}");
    assert_eq!(document.interchanges[0].trailer, None);
}

#[test]
fn a_group_envelope_error_rejects_that_group_and_all_its_sets_only() {
    let text = two_groups().replace("GE*2*7", "GE*3*7");
    let (document, acks) = acknowledge_all(&text);
    assert!(
        document.interchanges[0]
            .envelope_errors(&document.diagnostics)
            .is_empty()
    );
    let group = &document.interchanges[0].groups[0];
    let errors = group.envelope_errors(&document.diagnostics);
    assert_eq!(
        (errors[0].segment_id.as_deref(), errors[0].code),
        (Some("GE"), DiagCode::Count)
    );
    assert_eq!(statuses(&acks), [(R, vec![R, R], 0), (A, vec![A], 1)]);
    assert_eq!(acks[0].errors, ["5"]);

    // A segment between two sets rejects its group, without a code.
    let stray = two_groups().replacen("ST*846*0002", "REF*ZZ*X~\nST*846*0002", 1);
    let (_, acks) = acknowledge_all(&stray);
    assert_eq!(statuses(&acks), [(R, vec![R, R], 0), (A, vec![A], 1)]);
    assert!(acks[0].errors.is_empty());
}

#[test]
fn a_set_envelope_error_rejects_that_set_only() {
    let text = two_groups().replacen("SE*8*0002", "SE*7*0002", 1);
    let (document, acks) = acknowledge_all(&text);
    assert_eq!(
        statuses(&acks),
        [
            (AckStatus::PartiallyAccepted, vec![A, R], 1),
            (A, vec![A], 1)
        ]
    );
    assert_eq!(acks[0].sets[1].errors, ["4"]);
    let set = &document.interchanges[0].groups[0].sets[1];
    let errors = set.errors(&document.diagnostics);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].segment_id.as_deref(), Some("SE"));
    // The set as read keeps the wrong SE.
    let raw: Vec<&str> = set.raw_segments().map(|s| s.id.as_str()).collect();
    assert_eq!(raw.first(), Some(&"ST"));
    assert_eq!(raw.last(), Some(&"SE"));
    assert_eq!(set.se.as_ref().map(|s| s.value(1)), Some("7"));

    // A set without an SE is reported on its ST (AK5 code 2); its group's GE still counts it.
    let no_se = two_groups().replacen("SE*8*0002~\n", "", 1);
    let (document, acks) = acknowledge_all(&no_se);
    assert_eq!(
        statuses(&acks),
        [
            (AckStatus::PartiallyAccepted, vec![A, R], 1),
            (A, vec![A], 1)
        ]
    );
    assert_eq!(acks[0].sets[1].errors, ["2"]);
    let set = &document.interchanges[0].groups[0].sets[1];
    assert_eq!(
        set.errors(&document.diagnostics)[0].segment_id.as_deref(),
        Some("ST")
    );
}
