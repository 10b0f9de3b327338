//! The command-line flags of the test and benchmark binaries: `--name
//! value` pairs, with errors that name the flag and the value.

/// `--name value` pairs, in order; the error names a flag with no value.
pub fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let value = it.next().ok_or(format!("{name} needs a value"))?;
        out.push((name.as_str(), value.as_str()));
    }
    Ok(out)
}

/// The value of flag `name`, parsed.
pub fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{name} {value}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_pair_with_their_values_in_order() {
        let args = strings(&["--listen", "127.0.0.1:0", "--workers", "2"]);
        assert_eq!(
            pairs(&args),
            Ok(vec![("--listen", "127.0.0.1:0"), ("--workers", "2")])
        );
        assert_eq!(
            pairs(&strings(&["--listen", "a", "--workers"])),
            Err("--workers needs a value".into())
        );
    }

    #[test]
    fn a_bad_value_is_named_with_its_flag() {
        assert_eq!(parse::<u32>("--workers", "2"), Ok(2));
        assert_eq!(
            parse::<u32>("--workers", "two"),
            Err("--workers two: invalid digit found in string".into())
        );
    }
}
