use super::*;

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const H1: &str = "3e11fa4771ca11e19e33c80aa9429562";
const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
const H2: &str = "4e11fa4771ca11e19e33c80aa9429562";

fn set(s: &str) -> GtidSet {
    GtidSet::parse(s).unwrap()
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn snapshot_line_is_one_interval_per_token() {
    let mut enc = Encoder::new(Dialect::Batched);
    let mut out = Vec::new();
    let skipped = enc.snapshot(&set(&format!("{U1}:1-5:7:t:1-3,{U2}:9")), &mut out);
    assert_eq!(text(&out), format!("ST={U1}:1-5,{U1}:7-7,{U2}:9-9\n"));
    assert_eq!(skipped, 1, "the tagged interval is left out");
    out.clear();
    enc.snapshot(&GtidSet::new(), &mut out);
    assert_eq!(text(&out), "ST=\n");
}

#[test]
fn batched_delta_lines() {
    let mut enc = Encoder::new(Dialect::Batched);
    let mut out = Vec::new();
    enc.delta(&set(&format!("{U1}:5:7-9,{U2}:3")), &mut out);
    enc.delta(&set(&format!("{U2}:4-6")), &mut out);
    enc.delta(&set(&format!("{U2}:8")), &mut out);
    assert_eq!(
        text(&out),
        format!("I1={H1}:5\nI4=7-9\nI1={H2}:3\nI4=4-6\nI2=8\n")
    );
}

#[test]
fn per_transaction_expands_short_ranges_and_bootstraps_long_ones() {
    let mut enc = Encoder::new(Dialect::PerTransaction);
    let mut out = Vec::new();
    enc.delta(&set(&format!("{U1}:1-3:100-1000")), &mut out);
    assert_eq!(
        text(&out),
        format!("ST={U1}:100-1000\nI1={H1}:1\nI2=2\nI2=3\n")
    );
}

#[test]
fn st_line_resets_the_previous_uuid() {
    let mut enc = Encoder::new(Dialect::Batched);
    let mut out = Vec::new();
    enc.delta(&set(&format!("{U1}:1")), &mut out);
    enc.snapshot(&set(&format!("{U1}:1")), &mut out);
    enc.delta(&set(&format!("{U1}:2")), &mut out);
    assert_eq!(text(&out), format!("I1={H1}:1\nST={U1}:1-1\nI1={H1}:2\n"));
}

#[test]
fn decoder_reads_what_the_encoder_writes() {
    let truth = set(&format!("{U1}:1-5:7:9-20,{U2}:3"));
    for dialect in [Dialect::Batched, Dialect::PerTransaction] {
        let mut enc = Encoder::new(dialect);
        let mut out = Vec::new();
        enc.snapshot(&set(&format!("{U1}:1-5")), &mut out);
        enc.delta(&set(&format!("{U1}:7:9-20")), &mut out);
        enc.delta(&set(&format!("{U2}:3")), &mut out);
        let mut view = GtidSet::new();
        // Byte at a time: lines split across reads.
        let mut dec = Decoder::new();
        let mut lines = 0;
        for b in &out {
            lines += dec.feed(std::slice::from_ref(b), &mut view).unwrap();
        }
        assert_eq!(view, truth, "{dialect:?}");
        assert!(lines >= 3);
    }
}

#[test]
fn decoder_accepts_proxysql_mysqlbinlog_forms() {
    let mut view = GtidSet::new();
    let mut dec = Decoder::new();
    let input = format!("ST={U1}:1-5:7,{H2}:2\nI2=3\nI3={H1}:9\nI4=11-12\n");
    assert_eq!(dec.feed(input.as_bytes(), &mut view).unwrap(), 4);
    assert_eq!(view.to_string(), format!("{U1}:1-5:7:9:11-12,\n{U2}:2-3"));
}

#[test]
fn decoder_errors_name_line_and_position() {
    let cases: Vec<(String, u64, usize, &str)> = vec![
        ("I2=5\n".into(), 1, 0, "I2/I4 without a previous uuid"),
        (
            format!("I1={H1}:5\nI2=5x\n"),
            2,
            4,
            "unexpected text at end of line",
        ),
        (
            format!("I1={H1}:0\n"),
            1,
            36,
            "transaction number must be positive",
        ),
        (
            format!("I3={H1}:9-3\n"),
            1,
            36,
            "interval end before its start",
        ),
        (
            format!("ST={U1}:tag:1-2\n"),
            1,
            40,
            "tagged gtids are not part of the proxysql protocol",
        ),
        (format!("ST={U1}\n"), 1, 39, "expected ':' after the uuid"),
        ("XX=1\n".into(), 1, 0, "unknown message"),
        ("\n".into(), 1, 0, "unknown message"),
        ("I1=zz:1\n".into(), 1, 3, "expected a uuid"),
    ];
    for (input, line, pos, reason) in cases {
        let mut view = GtidSet::new();
        let got = Decoder::new().feed(input.as_bytes(), &mut view);
        assert_eq!(
            got,
            Err(Error::ProxysqlLine { line, pos, reason }),
            "{input:?}"
        );
    }
}

#[test]
fn bad_bootstrap_leaves_view_untouched() {
    let mut view = GtidSet::new();
    let bad = format!("ST={U1}:1-5,{U2}:x\n");
    assert!(Decoder::new().feed(bad.as_bytes(), &mut view).is_err());
    assert!(view.is_empty());
}

#[test]
fn line_length_is_bounded() {
    let mut dec = Decoder::with_max_line_len(16);
    let mut view = GtidSet::new();
    assert_eq!(dec.feed(b"ST=0123456789", &mut view), Ok(0));
    assert_eq!(
        dec.feed(b"0123456789", &mut view),
        Err(Error::LineTooLong { max: 16 })
    );
    assert!(
        dec.feed(b"\n", &mut view).is_err(),
        "failed streams stay failed"
    );
}

#[test]
fn i_lines_fit_proxysqls_80_byte_buffer() {
    // ProxySQL copies each I line into `char rec_msg[80]`.
    let max = crate::MAX_GNO;
    let mut enc = Encoder::new(Dialect::Batched);
    let mut out = Vec::new();
    enc.delta(&set(&format!("{U1}:{}-{max}", max - 1)), &mut out);
    let line = text(&out).trim_end();
    assert!(line.starts_with("I3=") && line.len() < 80, "{line}");
}
