//! Defensive reading of fields in Azure's answers: strings that may be
//! numbers, booleans that may be the strings "True"/"False", numbers that
//! may be strings, epoch seconds and RFC 3339 times, and enum values whose
//! casing drifts (AZURE.md, "Real Azure, beyond the official examples").
//! Absent or unreadable fields are `None` here; each type applies Azure's
//! documented default itself.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{AzureError, truncate_raw};

/// A string field, or empty; a number is its digits.
pub(crate) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A non-empty string at a JSON pointer (`/properties/vaultUri`).
pub(crate) fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean, or the strings "true"/"false" in any case.
pub(crate) fn flag(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A finite number, or a number in a string.
pub(crate) fn number(v: Option<&Value>) -> Option<f64> {
    let n = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A count: a non-negative number, rounded.
pub(crate) fn count(v: Option<&Value>) -> u64 {
    number(v)
        .filter(|n| *n >= 0.0)
        .map_or(0, |n| n.round() as u64)
}

/// Epoch seconds (Key Vault's `created`, `updated`, `exp`, `nbf`).
pub(crate) fn epoch(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = number(v)?;
    DateTime::from_timestamp(secs.trunc() as i64, 0)
}

/// An RFC 3339 time (ARM's `createdTime`).
pub(crate) fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The known spelling of an enum value compared case-insensitively, the
/// value as given when it is not known, or `default` when absent or empty.
pub(crate) fn canonical(v: Option<&Value>, known: &[&str], default: &str) -> String {
    let given = match v {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
        _ => return default.to_string(),
    };
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(given))
        .map_or_else(|| given.to_string(), |k| k.to_string())
}

/// The resource group named in a resource id, or empty.
pub(crate) fn resource_group_of(id: &str) -> String {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    segs.iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| segs.get(i + 1))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// The last segment of an id (`.../roleDefinitions/{guid}` → the GUID).
pub(crate) fn last_segment(id: &str) -> &str {
    id.trim()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The field `key` (`subscriptionId`, `name`), else the last segment of the
/// item's `id`; an item with neither is malformed.
pub(crate) fn key_or_id(item: &Value, key: &str, what: &str) -> Result<String, AzureError> {
    let value = text(item, key);
    if !value.is_empty() {
        return Ok(value);
    }
    let from_id = last_segment(&text(item, "id")).to_string();
    if from_id.is_empty() {
        return Err(AzureError::Malformed(format!(
            "{what} without an id: {}",
            truncate_raw(&item.to_string())
        )));
    }
    Ok(from_id)
}

/// An item's `properties` object. Reads whose facts live there (storage
/// accounts, key vaults, keys, secrets) cannot judge an item without it:
/// its absence is a malformed answer, not every setting at its default.
/// (Azure's generic `/resources` list has no `properties`; these reads use
/// each provider's own list, which always has them.)
pub(crate) fn properties<'v>(item: &'v Value, what: &str) -> Result<&'v Value, AzureError> {
    match item.get("properties") {
        Some(p) if p.is_object() => Ok(p),
        _ => Err(AzureError::Malformed(format!(
            "{what} without its properties: {}",
            truncate_raw(&item.to_string())
        ))),
    }
}

/// An item's `id` and `name` (else the id's last segment).
pub(crate) fn identity(item: &Value, what: &str) -> Result<(String, String), AzureError> {
    Ok((text(item, "id"), key_or_id(item, "name", what)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_drifting_types() {
        assert_eq!(flag(Some(&json!("True"))), Some(true));
        assert_eq!(flag(Some(&json!(false))), Some(false));
        assert_eq!(flag(Some(&json!("maybe"))), None);
        assert_eq!(flag(None), None);
        assert_eq!(number(Some(&json!("23.53"))), Some(23.53));
        assert_eq!(number(Some(&json!(null))), None);
        assert_eq!(count(Some(&json!(-3))), 0);
        assert_eq!(count(Some(&json!("7"))), 7);
        assert_eq!(
            epoch(Some(&json!(1596493796))).map(|t| t.to_rfc3339()),
            Some("2020-08-03T22:29:56+00:00".to_string())
        );
        assert_eq!(
            canonical(Some(&json!("tls1_2")), &["TLS1_0", "TLS1_2"], "TLS1_0"),
            "TLS1_2"
        );
        assert_eq!(canonical(None, &["TLS1_0"], "TLS1_0"), "TLS1_0");
        assert_eq!(
            canonical(Some(&json!("TLS9")), &["TLS1_0"], "TLS1_0"),
            "TLS9"
        );
        assert_eq!(
            resource_group_of("/subscriptions/s/resourceGroups/RG-1/providers/x/y/z"),
            "RG-1"
        );
        assert_eq!(
            last_segment("/providers/Microsoft.Authorization/roleDefinitions/abc/"),
            "abc"
        );
        assert_eq!(
            text_at(&json!({"a": {"b": " x "}}), "/a/b").as_deref(),
            Some("x")
        );
    }
}

/// An RFC 3339 time, or `None`.
pub(crate) fn time_of(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Typed reading of list items (`serde`'s `deserialize_with`), as
/// forgiving as the `Value` readers above: a page of a thousand resources
/// is read straight into its items, without the JSON tree first.
pub(crate) mod lenient {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    /// What a string field reads as when it holds something else.
    struct Text;

    impl<'de> Visitor<'de> for Text {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    /// A string, or `None` for anything else (absent, `null`, a number,
    /// an object).
    pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(Text)
    }

    struct Tags;

    impl<'de> Visitor<'de> for Tags {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("tags")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut tags = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                tags.insert(k, v);
            }
            Ok(tags)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(BTreeMap::new())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }

    /// Tags as `inventory::tags_of` reads them: an object (a `null` value
    /// is empty, any other non-string its JSON text); anything else is
    /// no tags.
    pub(crate) fn tags<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        d.deserialize_any(Tags)
    }
}
