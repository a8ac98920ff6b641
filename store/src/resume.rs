//! What a resume may replay, shared by every hot state: the frames after
//! the client's `last_seq` only when they are a gapless run from the very
//! next one. A buffer that no longer reaches back, a hole (a frame whose
//! append failed) or a client ahead of the buffer all mean a full snapshot
//! (`None`), never a silent gap.

use invigil_actors::ports::OutboundFrame;

/// `newest`: the newest seq held, `None` without a buffer; `missed`: the
/// held frames after `after_seq`, oldest first.
pub fn replay(
    after_seq: u64,
    newest: Option<u64>,
    missed: Vec<OutboundFrame>,
) -> Option<Vec<OutboundFrame>> {
    // Nothing held, or nothing newer: up to date only if the client has
    // exactly what the buffer ends with.
    let newest = newest.unwrap_or(0);
    if after_seq >= newest {
        return (after_seq == newest).then(Vec::new);
    }
    let gapless = missed
        .first()
        .is_some_and(|first| first.seq == after_seq + 1)
        && missed
            .iter()
            .zip(after_seq + 1..)
            .all(|(frame, expected)| frame.seq == expected);
    gapless.then_some(missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(seqs: &[u64]) -> Vec<OutboundFrame> {
        seqs.iter()
            .map(|&seq| OutboundFrame {
                seq,
                text: "".into(),
            })
            .collect()
    }

    #[test]
    fn only_a_gapless_run_from_the_next_seq_replays() {
        assert_eq!(replay(0, None, vec![]), Some(vec![]));
        assert_eq!(
            replay(3, None, vec![]),
            None,
            "no buffer, client has seen frames"
        );
        assert_eq!(replay(5, Some(5), vec![]), Some(vec![]));
        assert_eq!(replay(6, Some(5), vec![]), None, "ahead of the buffer");
        assert_eq!(
            replay(2, Some(5), frames(&[3, 4, 5])),
            Some(frames(&[3, 4, 5]))
        );
        assert_eq!(
            replay(1, Some(5), frames(&[3, 4, 5])),
            None,
            "no longer reaches back"
        );
        assert_eq!(replay(2, Some(5), frames(&[3, 5])), None, "a hole");
    }
}
