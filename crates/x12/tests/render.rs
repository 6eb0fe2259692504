//! The writer: envelopes, counts and control numbers, and the values it refuses to write.

use crossdock_x12::sets::{Party, PoLine, ProductId};
use crossdock_x12::{
    Date, OutboundEnvelope, PoAck855, PurchaseOrder850, Release, Separators, Time, TypedSet, Usage,
    parse, render,
};

fn envelope() -> OutboundEnvelope {
    OutboundEnvelope::new(
        ("ZZ", "CROSSDOCK"),
        ("12", "8005551212"),
        123,
        45,
        Date::new(2024, 2, 29).expect("date"),
        Time::hms(23, 59, 30).expect("time"),
    )
}

fn order(number: &str) -> PurchaseOrder850 {
    PurchaseOrder850 {
        purpose: "00".into(),
        order_type: "SA".into(),
        po_number: number.into(),
        date: Date::new(2024, 2, 28),
        parties: vec![Party {
            entity: "ST".into(),
            name: Some("Store 12".into()),
            id_qualifier: Some("92".into()),
            id: Some("12".into()),
            ..Party::default()
        }],
        lines: vec![PoLine {
            line_number: Some("1".into()),
            quantity: "24".parse().ok(),
            unit: Some("EA".into()),
            unit_price: "1.25".parse().ok(),
            product_ids: vec![ProductId {
                qualifier: "VN".into(),
                id: "SKU-1".into(),
            }],
            ..PoLine::default()
        }],
        ..PurchaseOrder850::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn envelope_counts_and_control_numbers() {
    let text = render(&envelope(), &[order("PO-1").into(), order("PO-2").into()]).expect("renders");
    let lines = lines(&text);
    let isa = lines[0];
    assert_eq!(
        isa.len(),
        106,
        "a fixed-width ISA with its terminator: {isa:?}"
    );
    assert_eq!(
        isa,
        "ISA*00*          *00*          *ZZ*CROSSDOCK      *12*8005551212     *240229*2359*U*00401*000000123*0*P*>~"
    );
    assert_eq!(
        lines[1],
        "GS*PO*CROSSDOCK*8005551212*20240229*2359*45*X*004010~"
    );
    assert_eq!(lines[2], "ST*850*0001~");
    let first_se = lines.iter().position(|l| l.starts_with("SE*")).expect("SE");
    assert_eq!(lines[first_se], format!("SE*{}*0001~", first_se - 2 + 1));
    assert_eq!(lines[first_se + 1], "ST*850*0002~");
    assert_eq!(lines[lines.len() - 2], "GE*2*45~");
    assert_eq!(lines[lines.len() - 1], "IEA*1*000000123~");
    assert!(text.ends_with("~\n"));

    // What was written reads back without a single diagnostic.
    let document = parse(text.as_bytes()).expect("parses");
    assert!(
        document.diagnostics.is_empty(),
        "{:#?}",
        document.diagnostics
    );
    assert_eq!(document.sets().count(), 2);
}

#[test]
fn release_005010_writes_its_repetition_separator_and_suffix() {
    let mut envelope = envelope();
    envelope.release = Release::V005010;
    envelope.version_suffix = "VICS".into();
    envelope.usage = Usage::Test;
    envelope.ack_requested = true;
    let text = render(&envelope, &[order("PO-1").into()]).expect("renders");
    let lines = lines(&text);
    assert!(
        lines[0].ends_with("*240229*2359*^*00501*000000123*1*T*>~"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with("*005010VICS~"), "{}", lines[1]);
    let document = parse(text.as_bytes()).expect("parses");
    assert!(
        document.diagnostics.is_empty(),
        "{:#?}",
        document.diagnostics
    );
    let separators = document.interchanges[0].separators;
    assert_eq!(separators.repetition, Some('^'));
}

#[test]
fn other_separators_and_newline_terminators() {
    let mut envelope = envelope();
    envelope.separators = Separators {
        element: '|',
        repetition: None,
        component: ':',
        segment: '\n',
    };
    let text = render(&envelope, &[order("PO*1").into()]).expect("'*' is data here");
    assert!(text.contains("\nBEG|00|SA|PO*1||20240228\n"), "{text}");
    let document = parse(text.as_bytes()).expect("parses");
    assert!(!document.has_errors(), "{:#?}", document.diagnostics);
}

#[test]
fn a_value_holding_a_separator_is_refused_with_its_place() {
    let mut po = order("PO~1");
    po.parties[0].name = Some("Smith*Sons".into());
    let error = render(&envelope(), &[po.into()]).expect_err("separators in values");
    let problems = error.problems.join("\n");
    assert!(
        problems.contains(
            "850 set 1 (ST02 0001), segment 2 (BEG): BEG03 \"PO~1\" contains the segment terminator"
        ),
        "{problems}"
    );
    assert!(
        problems.contains("segment 3 (N1): N102 \"Smith*Sons\" contains the element separator"),
        "{problems}"
    );
}

#[test]
fn mandatory_elements_codes_and_control_characters_are_checked() {
    let mut po = order("");
    po.lines[0].unit = Some("EACH".into());
    po.parties[0].name = Some("Line\nbreak".into());
    let error = render(&envelope(), &[po.into()]).expect_err("invalid values");
    let problems = error.problems.join("\n");
    assert!(
        problems.contains("segment 2 (BEG): BEG03 is mandatory but empty"),
        "{problems}"
    );
    assert!(
        problems.contains("PO103 (unit of measure code) \"EACH\" is longer than 2"),
        "{problems}"
    );
    assert!(
        problems.contains("N102 \"Line\\nbreak\" contains the control character"),
        "{problems}"
    );
}

#[test]
fn one_interchange_holds_one_functional_group() {
    let ack = PoAck855 {
        purpose: "00".into(),
        ack_type: "AK".into(),
        po_number: "PO-1".into(),
        po_date: Date::new(2024, 2, 28),
        ..PoAck855::default()
    };
    let sets: Vec<TypedSet> = vec![order("PO-1").into(), ack.into()];
    let error = render(&envelope(), &sets).expect_err("PO and PR");
    assert!(
        error
            .to_string()
            .contains("set 2 (855) belongs in a group with GS01 PR"),
        "{error}"
    );
    assert!(render(&envelope(), &[]).is_err());
}

#[test]
fn envelope_fields_are_checked() {
    let mut envelope = envelope();
    envelope.sender_id = "A-SENDER-ID-LONGER-THAN-15".into();
    envelope.receiver_qualifier = "1".into();
    envelope.interchange_control = 1_000_000_000;
    envelope.group_control = 0;
    envelope.application_receiver = "X".into();
    envelope.version_suffix = "TOOLONGSUFFIX".into();
    let error = render(&envelope, &[order("PO-1").into()]).expect_err("bad envelope");
    let problems = error.problems.join("\n");
    for expected in ["ISA06", "ISA07", "ISA13", "GS06", "GS03", "GS08"] {
        assert!(
            problems.contains(expected),
            "{expected} not named:\n{problems}"
        );
    }

    let mut envelope = self::envelope();
    envelope.separators.component = '*';
    let error = render(&envelope, &[order("PO-1").into()]).expect_err("same separators");
    assert!(error.to_string().contains("separators"), "{error}");
}
