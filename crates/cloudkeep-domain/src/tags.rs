//! Azure's tag rules, checked before an edit is accepted: at most 50 tags,
//! names up to 512 characters (128 on storage accounts), values up to 256,
//! no `< > % & \ ? /` or control characters in names, names case-insensitive.

use std::collections::BTreeMap;

pub type Tags = BTreeMap<String, String>;

pub const MAX_TAGS: usize = 50;
pub const MAX_VALUE_LEN: usize = 256;
const FORBIDDEN: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagRuleError {
    #[error("tag name '{0}' is empty or only white space")]
    EmptyName(String),
    #[error(
        "tag name '{name}' contains '{character}': Azure forbids < > % & \\ ? / and control characters in tag names"
    )]
    ForbiddenCharacter { name: String, character: char },
    #[error("tag name '{name}' is {len} characters long; Azure allows {max} here")]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("the value of tag '{name}' is {len} characters long; Azure allows 256")]
    ValueTooLong { name: String, len: usize },
    #[error("tag name '{0}' appears twice (tag names are case-insensitive in Azure)")]
    Duplicate(String),
    #[error("the resource would have {0} tags; Azure allows 50")]
    TooMany(usize),
}

/// The longest tag name Azure accepts on a resource of this type.
pub fn max_name_len(resource_type: &str) -> usize {
    if resource_type.eq_ignore_ascii_case("Microsoft.Storage/storageAccounts") {
        128
    } else {
        512
    }
}

/// Checks the names and values an edit sets or removes.
pub fn check_edit(set: &Tags, remove: &[String], resource_type: &str) -> Result<(), TagRuleError> {
    let max = max_name_len(resource_type);
    let mut seen: Vec<String> = Vec::new();
    for name in set.keys().chain(remove.iter()) {
        if name.trim().is_empty() {
            return Err(TagRuleError::EmptyName(name.clone()));
        }
        if let Some(c) = name
            .chars()
            .find(|c| FORBIDDEN.contains(c) || c.is_control())
        {
            return Err(TagRuleError::ForbiddenCharacter {
                name: name.clone(),
                character: c,
            });
        }
        let len = name.chars().count();
        if len > max {
            return Err(TagRuleError::NameTooLong {
                name: name.clone(),
                len,
                max,
            });
        }
        let lower = name.to_lowercase();
        if seen.contains(&lower) {
            return Err(TagRuleError::Duplicate(name.clone()));
        }
        seen.push(lower);
    }
    for (name, value) in set {
        let len = value.chars().count();
        if len > MAX_VALUE_LEN {
            return Err(TagRuleError::ValueTooLong {
                name: name.clone(),
                len,
            });
        }
    }
    Ok(())
}

/// The tags after applying an edit (names compared case-insensitively).
pub fn apply(current: &Tags, set: &Tags, remove: &[String]) -> Tags {
    let mut out = current.clone();
    for name in remove.iter().chain(set.keys()) {
        if let Some(existing) = out.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() {
            out.remove(&existing);
        }
    }
    for (k, v) in set {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Checks the tag count an edit would leave on a resource.
pub fn check_count(after: &Tags) -> Result<(), TagRuleError> {
    if after.len() > MAX_TAGS {
        Err(TagRuleError::TooMany(after.len()))
    } else {
        Ok(())
    }
}

/// A tag's value by case-insensitive name.
pub fn get<'a>(tags: &'a Tags, name: &str) -> Option<&'a String> {
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn enforces_azure_rules() {
        assert!(check_edit(&tags(&[("env", "prod")]), &["owner".into()], "x").is_ok());
        assert!(matches!(
            check_edit(&tags(&[("a/b", "x")]), &[], "x"),
            Err(TagRuleError::ForbiddenCharacter { character: '/', .. })
        ));
        assert!(matches!(
            check_edit(
                &tags(&[(&"n".repeat(129), "x")]),
                &[],
                "Microsoft.Storage/storageAccounts"
            ),
            Err(TagRuleError::NameTooLong { max: 128, .. })
        ));
        assert!(
            check_edit(
                &tags(&[(&"n".repeat(129), "x")]),
                &[],
                "Microsoft.Compute/disks"
            )
            .is_ok()
        );
        assert!(matches!(
            check_edit(&tags(&[("k", &"v".repeat(257))]), &[], "x"),
            Err(TagRuleError::ValueTooLong { .. })
        ));
        assert!(matches!(
            check_edit(&tags(&[("Env", "x")]), &["env".into()], "x"),
            Err(TagRuleError::Duplicate(_))
        ));
        assert!(matches!(
            check_edit(&tags(&[(" ", "x")]), &[], "x"),
            Err(TagRuleError::EmptyName(_))
        ));
        let after = apply(
            &tags(&[("ENV", "dev"), ("owner", "a")]),
            &tags(&[("env", "prod")]),
            &["Owner".into()],
        );
        assert_eq!(after, tags(&[("env", "prod")]));
        let many: Tags = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(check_count(&many), Err(TagRuleError::TooMany(51)));
    }
}
