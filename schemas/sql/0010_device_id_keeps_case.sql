-- device_id values keep their case. Lower-casing them (0009) made an identifier a partner
-- keeps case-sensitively (an iOS advertising id is upper-case by convention) arrive as a
-- different value: the partner answered not_found and kept the data. A device id sent in
-- two spellings is now two subjects, erased twice, which is harmless; a missed erasure is
-- not. Requests accepted before this keep the lower-cased value they were accepted with.
-- Forward-only: a published migration is never edited; changes go in a new file.
UPDATE identifier_types SET lowercase = false WHERE name = 'device_id' AND builtin;
