//! Sensor ids kept once, each known by its place (the order they were first seen): what many
//! rows refer to instead of copying the id into each (a file's rows in the archive, the
//! report's windows).

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct SensorIds {
    ids: Vec<String>,
    places: HashMap<String, u32, foldhash::fast::RandomState>,
}

impl SensorIds {
    /// The place of `id`, given one if it is new.
    pub fn place(&mut self, id: &str) -> u32 {
        if let Some(&place) = self.places.get(id) {
            return place;
        }
        let place = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.places.insert(id.to_string(), place);
        place
    }

    /// The place of `id`, if it has one.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.places.get(id).copied()
    }

    /// The id at `place`.
    pub fn id(&self, place: u32) -> &str {
        &self.ids[place as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Places are given in the order ids are first seen, and an id keeps its place.
    #[test]
    fn an_id_keeps_the_place_it_was_first_given() {
        let mut ids = SensorIds::default();
        assert_eq!([ids.place("b"), ids.place("a"), ids.place("b"), ids.place("c")], [0, 1, 0, 2]);
        assert_eq!((ids.get("a"), ids.get("d")), (Some(1), None));
        assert_eq!([ids.id(0), ids.id(1), ids.id(2)], ["b", "a", "c"]);
    }
}
