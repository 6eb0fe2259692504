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
