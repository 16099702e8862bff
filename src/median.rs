//! The one median of the crate: analysis (reference temperatures, scene
//! shift) and the model trial (run times) use it.

/// Median of the values (reorders them, in linear time); `None` for none.
///
/// An even count gives the mean of the two middle values, for both uses: the
/// frame's reference temperature (two healthy modules at 30 and 32 C have a
/// reference of 31, not 32, so neither is graded against the hotter one) and
/// the tracker's global scene shift (taking the upper middle value would bias
/// the motion estimate towards the larger displacement of a pair).
pub(crate) fn median(v: &mut [f32]) -> Option<f32> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (lower, &mut upper, _) = v.select_nth_unstable_by(n / 2, f32::total_cmp);
    Some(if n % 2 == 1 {
        upper
    } else {
        // The lower middle value is the largest of the lower half.
        let below = lower
            .iter()
            .copied()
            .max_by(f32::total_cmp)
            .unwrap_or(upper);
        0.5 * (below + upper)
    })
}
