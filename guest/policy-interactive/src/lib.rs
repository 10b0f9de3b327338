//! The `interactive` policy component: levee-policy-core's `Interactive` profile behind
//! the `levee:policy` WIT contract. It imports nothing.

levee_policy_wit::export_policy!(levee_policy_wit::Interactive);
