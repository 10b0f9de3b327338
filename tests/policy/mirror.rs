//! What the host sends is what a guest receives: the `mirror` fixture
//! answers with the `Debug` form of its arguments (see its docs), and the
//! host's own values must print the same, field for field.

use levee::core::sample::Sampler;
use levee::core::{Admission, NextStep, Outcome, Retry};
use levee::policy::PolicySource;
use levee_tests::fixtures::Fixture;

/// FNV-1a, 64 bits, as the fixture computes it.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn a_guest_receives_exactly_what_the_host_sends() {
    let engine = super::patient_engine();
    let mirror = engine
        .load(&PolicySource::File(Fixture::Mirror.path().into()), "")
        .expect("the mirror loads");
    let mut sampler = Sampler::new(11);
    let cases: Vec<_> = std::iter::once(sampler.typical())
        .chain((0..2_000).map(|_| sampler.case()))
        .collect();
    for (i, case) in cases.iter().enumerate() {
        match mirror
            .try_on_request(&case.req, &case.view)
            .expect("no trap")
        {
            Admission::Reject(r) => assert_eq!(
                r.message,
                format!("{:?} {:?}", case.req, case.view),
                "case {i}: on-request's arguments arrived changed"
            ),
            other => panic!("case {i}: the mirror answered {other:?}"),
        }
        let step = mirror
            .try_on_outcome(&case.req, &case.order, &case.attempt, &case.view)
            .expect("no trap");
        let expected = match case.attempt.outcome {
            Outcome::Response(r) if r.status < 400 => NextStep::Deliver,
            _ => NextStep::Retry(Retry {
                upstream: case.attempt.upstream,
                delay_ms: fnv1a(&format!(
                    "{:?} {:?} {:?} {:?}",
                    case.req, case.order, case.attempt, case.view
                )),
            }),
        };
        assert_eq!(
            step, expected,
            "case {i}: on-outcome's arguments arrived changed: {case:?}"
        );
    }
}
