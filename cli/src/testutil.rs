//! Test doubles shared by the unit tests of streaming commands.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;

/// A reader that hands out one line per `read` and panics when asked for the next line before
/// the previous one was printed to the paired [`Shared`] writer: proof that output appears as
/// the server produces it, not at the end of the stream.
pub struct OneAtATime {
    lines: Vec<&'static [u8]>,
    printed: Rc<RefCell<Vec<u8>>>,
    served: usize,
}

/// The writer the printed lines go to, readable by the test.
pub struct Shared(pub Rc<RefCell<Vec<u8>>>);

/// A reader of `lines` and the writer it watches.
pub fn one_line_at_a_time(lines: Vec<&'static [u8]>) -> (OneAtATime, Shared) {
    let printed = Rc::new(RefCell::new(Vec::new()));
    (
        OneAtATime {
            lines,
            printed: printed.clone(),
            served: 0,
        },
        Shared(printed),
    )
}

impl Read for OneAtATime {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let printed = self
            .printed
            .borrow()
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        assert_eq!(
            printed, self.served,
            "line not printed before the next read"
        );
        let Some(line) = self.lines.get(self.served) else {
            return Ok(0);
        };
        buf[..line.len()].copy_from_slice(line);
        self.served += 1;
        Ok(line.len())
    }
}

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
