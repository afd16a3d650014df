//! Pinned storage for a gather's branch calls: one heap allocation per eight
//! branches, no `unsafe`.
//!
//! Each branch's response future may be `!Unpin` (a timeout's `Sleep`, an
//! `async` block), so it must stay pinned while it runs. The usual ways to pin
//! many futures are one `Box::pin` per future (an allocation per branch, which
//! is what this crate promises not to do) or a pinned boxed slice projected
//! with `unsafe` (`futures_util::future::join_all` does this in
//! `iter_pin_mut`). `unsafe_code` is forbidden here, so a [`Chunk`] is a
//! struct with eight structurally pinned fields, projected by
//! `pin-project-lite` like any other struct, plus a link to the next chunk for
//! fan-outs wider than eight. A gather boxes its first chunk once: one
//! allocation for up to eight branches, one more per further eight. Each slot
//! holds a branch's pinned call and its unpinned bookkeeping and result, so
//! that one allocation is all a gather needs.

use std::pin::Pin;

use pin_project_lite::pin_project;

/// Branches held by one chunk.
pub(crate) const CHUNK: usize = 8;

pin_project! {
    /// Eight pinned slots and the rest of the list.
    #[derive(Debug)]
    pub(crate) struct Chunk<X> {
        #[pin] s0: X,
        #[pin] s1: X,
        #[pin] s2: X,
        #[pin] s3: X,
        #[pin] s4: X,
        #[pin] s5: X,
        #[pin] s6: X,
        #[pin] s7: X,
        next: Option<Pin<Box<Chunk<X>>>>,
    }
}

impl<X> Chunk<X> {
    /// A pinned chain of chunks holding `len` slots: slot `i` is `fill(i)`,
    /// called in order `0..len`; slots past `len` are `vacant()`.
    pub(crate) fn pinned<F>(len: usize, fill: &mut F, vacant: fn() -> X) -> Pin<Box<Self>>
    where
        F: FnMut(usize) -> X,
    {
        Self::pinned_from(0, len, fill, vacant)
    }

    fn pinned_from<F>(base: usize, len: usize, fill: &mut F, vacant: fn() -> X) -> Pin<Box<Self>>
    where
        F: FnMut(usize) -> X,
    {
        let mut slot = |i: usize| {
            if base + i < len {
                fill(base + i)
            } else {
                vacant()
            }
        };
        // Struct fields are evaluated in the order written, so `fill` sees
        // indices in ascending order.
        Box::pin(Self {
            s0: slot(0),
            s1: slot(1),
            s2: slot(2),
            s3: slot(3),
            s4: slot(4),
            s5: slot(5),
            s6: slot(6),
            s7: slot(7),
            next: (base + CHUNK < len).then(|| Self::pinned_from(base + CHUNK, len, fill, vacant)),
        })
    }

    /// Slot `i`, shared, or `None` past the end of the chain.
    pub(crate) fn shared(self: Pin<&Self>, i: usize) -> Option<Pin<&X>> {
        let this = self.project_ref();
        Some(match i {
            0 => this.s0,
            1 => this.s1,
            2 => this.s2,
            3 => this.s3,
            4 => this.s4,
            5 => this.s5,
            6 => this.s6,
            7 => this.s7,
            _ => return this.next.as_ref()?.as_ref().shared(i - CHUNK),
        })
    }

    /// The pinned slot `i`, or `None` past the end of the chain.
    pub(crate) fn get(self: Pin<&mut Self>, i: usize) -> Option<Pin<&mut X>> {
        let this = self.project();
        Some(match i {
            0 => this.s0,
            1 => this.s1,
            2 => this.s2,
            3 => this.s3,
            4 => this.s4,
            5 => this.s5,
            6 => this.s6,
            7 => this.s7,
            _ => return this.next.as_mut()?.as_mut().get(i - CHUNK),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::marker::PhantomPinned;

    /// A `!Unpin` value, as a branch's response future may be.
    #[derive(Debug)]
    struct NotUnpin {
        value: usize,
        _pin: PhantomPinned,
    }

    #[test]
    fn fills_in_order_across_chunks_and_leaves_the_rest_vacant() {
        for len in [1, 7, 8, 9, 16, 17, 40] {
            let mut seen = Vec::new();
            let mut fill = |i: usize| {
                seen.push(i);
                NotUnpin {
                    value: i + 1,
                    _pin: PhantomPinned,
                }
            };
            let mut chunk = Chunk::pinned(len, &mut fill, || NotUnpin {
                value: 0,
                _pin: PhantomPinned,
            });
            assert_eq!(seen, (0..len).collect::<Vec<_>>());
            for i in 0..len {
                let slot = chunk.as_mut().get(i).expect("slot in range");
                assert_eq!(slot.value, i + 1);
            }
            // Vacant slots up to the end of the last chunk, then nothing.
            let end = len.div_ceil(CHUNK) * CHUNK;
            for i in len..end {
                assert_eq!(chunk.as_mut().get(i).expect("vacant slot").value, 0);
            }
            assert!(chunk.as_mut().get(end).is_none());
        }
    }
}
