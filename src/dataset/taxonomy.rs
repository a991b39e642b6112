//! Class taxonomies shipped as data in `assets/taxonomy/`.

use serde::Deserialize;

use crate::{Error, Result};

const IMIGUE: &str = include_str!("../../assets/taxonomy/imigue.toml");
const MA52: &str = include_str!("../../assets/taxonomy/ma52.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Class {
    pub id: u32,
    /// Id in the release files (iMiGUE: 1..31 and 99); equal to `id` where absent.
    pub raw: Option<u32>,
    pub name: String,
    /// Body-level group (MA-52).
    pub group: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Taxonomy {
    pub name: String,
    pub classes: Vec<Class>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Taxonomy {
    pub fn imigue() -> Taxonomy {
        Self::parse_builtin("imigue", IMIGUE)
    }

    pub fn ma52() -> Taxonomy {
        Self::parse_builtin("ma52", MA52)
    }

    pub fn by_name(name: &str) -> Result<Taxonomy> {
        match name {
            "imigue" => Ok(Self::imigue()),
            "ma52" => Ok(Self::ma52()),
            other => Err(Error::Invalid(format!(
                "unknown taxonomy {other:?}; expected imigue or ma52"
            ))),
        }
    }

    fn parse_builtin(name: &str, text: &str) -> Taxonomy {
        // The assets are compiled in and covered by tests, so a parse failure is a build defect,
        // not user input.
        match toml::from_str::<Taxonomy>(text) {
            Ok(t) => t,
            Err(e) => panic!("built-in taxonomy {name} is malformed: {e}"),
        }
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn name_of(&self, id: u32) -> &str {
        self.classes
            .get(id as usize)
            .map(|c| c.name.as_str())
            .unwrap_or("?")
    }

    /// Release id (iMiGUE raw, e.g. 99) → class index.
    pub fn from_raw(&self, raw: u32) -> Option<u32> {
        self.classes
            .iter()
            .find(|c| c.raw.unwrap_or(c.id) == raw)
            .map(|c| c.id)
    }

    /// Class index → release id.
    pub fn to_raw(&self, id: u32) -> Option<u32> {
        self.classes.get(id as usize).map(|c| c.raw.unwrap_or(c.id))
    }

    /// Accepts a class index or (case-insensitively) a class name.
    pub fn parse_class(&self, s: &str) -> Result<u32> {
        if let Ok(n) = s.trim().parse::<u32>() {
            if (n as usize) < self.len() {
                return Ok(n);
            }
            return Err(Error::Invalid(format!(
                "class {n} is out of range: {} has classes 0..{}",
                self.name,
                self.len() - 1
            )));
        }
        let wanted = s.trim().to_lowercase();
        self.classes
            .iter()
            .find(|c| c.name.to_lowercase() == wanted)
            .map(|c| c.id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{s:?} is neither a class index nor a class name of {}",
                    self.name
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imigue_maps_raw_ids_like_mm_gesture() {
        let t = Taxonomy::imigue();
        assert_eq!(t.len(), 32);
        for (i, c) in t.classes.iter().enumerate() {
            assert_eq!(c.id as usize, i);
        }
        assert_eq!(t.from_raw(1), Some(0));
        assert_eq!(t.from_raw(31), Some(30));
        assert_eq!(t.from_raw(99), Some(31));
        assert_eq!(t.from_raw(32), None);
        assert_eq!(t.to_raw(31), Some(99));
        assert_eq!(t.name_of(10), "touch chin");
        assert_eq!(t.parse_class("Shake Shoulder").ok(), Some(30));
        assert!(t.parse_class("32").is_err());
    }

    #[test]
    fn ma52_has_52_classes_in_7_groups() {
        let t = Taxonomy::ma52();
        assert_eq!(t.len(), 52);
        assert_eq!(t.groups.len(), 7);
        let g: Vec<u32> = t.classes.iter().map(|c| c.group.unwrap_or(99)).collect();
        assert_eq!(g[4], 0);
        assert_eq!(g[5], 1);
        assert_eq!(g[23], 2);
        assert_eq!(g[31], 3);
        assert_eq!(g[37], 4);
        assert_eq!(g[47], 5);
        assert_eq!(g[51], 6);
        assert_eq!(t.name_of(43), "touching nose");
    }
}
