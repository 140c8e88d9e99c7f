//! Command framer + parser on arbitrary input; every parsed command round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbag_smtp_proto::codec::{Frame, LineFramer, parse_command};

fuzz_target!(|data: &[u8]| {
    let mut framer = LineFramer::new(512);
    let mut rest = data;
    loop {
        match framer.frame(rest) {
            Frame::Incomplete { consumed } => {
                assert!(consumed <= rest.len());
                break;
            }
            Frame::TooLong { consumed } => rest = &rest[consumed..],
            Frame::Line { line, consumed } => {
                assert!(line.end <= consumed && line.end - line.start <= 512);
                if let Ok(cmd) = parse_command(&rest[line]) {
                    let mut wire = Vec::new();
                    cmd.encode(&mut wire);
                    let again = parse_command(&wire).expect("encoded command must parse");
                    assert_eq!(again, cmd);
                    let mut wire2 = Vec::new();
                    again.encode(&mut wire2);
                    assert_eq!(wire, wire2);
                }
                rest = &rest[consumed..];
            }
        }
    }
});
