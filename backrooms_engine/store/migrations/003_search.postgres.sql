-- Full-text search over reply text (PostgreSQL's own), by the same rules as 003_search.sqlite.sql
-- (backrooms_engine/ports.py, RunFilter): words are runs of letters and digits, compared without
-- case or accents; every word of the box must be in one reply; `word*` is a prefix.
--
-- A reply's words are cut by backrooms_words() before PostgreSQL's parser sees them, so its
-- special tokens (URLs, e-mail addresses, 3.14, hyphenated words) never make a difference from
-- SQLite: "3.14" holds the words 3 and 14 on both. Accents go with the unaccent extension where
-- the server offers it (installed here if it is not yet), otherwise with a fixed table of the
-- Latin letters. The functions are created in the store's schema and name each other by schema,
-- so a generated column may use them whatever a later connection's search_path.

DO $migration$
DECLARE
    home text := quote_ident(current_schema());
    accents text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'unaccent')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent') THEN
        BEGIN
            CREATE EXTENSION unaccent SCHEMA public;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'unaccent could not be installed (%); accents are folded by a table', SQLERRM;
        END;
    END IF;
    SELECT quote_ident(n.nspname) INTO accents
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'unaccent';

    IF accents IS NOT NULL THEN
        EXECUTE format(
            'CREATE FUNCTION %s.backrooms_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE '
            'STRICT PARALLEL SAFE AS $f$ SELECT lower(%s.unaccent(%L::regdictionary, t)) $f$',
            home, accents, accents || '.unaccent');
        -- For ts_headline: the same folding as the dictionary of each word token.
        EXECUTE format('CREATE TEXT SEARCH CONFIGURATION %s.backrooms_search (COPY = simple)', home);
        EXECUTE format(
            'ALTER TEXT SEARCH CONFIGURATION %s.backrooms_search ALTER MAPPING FOR asciiword, '
            'word, numword, asciihword, hword, numhword, hword_asciipart, hword_part, '
            'hword_numpart WITH %s.unaccent, simple', home, accents);
    ELSE
        EXECUTE format(
            'CREATE FUNCTION %s.backrooms_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE '
            'STRICT PARALLEL SAFE AS $f$ SELECT translate(lower(t), %L, %L) $f$',
            home, 'àáâãäåçèéêëìíîïñòóôõöùúûüýÿāăąćĉċčďēĕėęěĝğġģĥĩīĭįĵķĺļľńņňōŏőŕŗřśŝşšţťũūŭůűųŵŷźżžſơưǎǐǒǔǖǘǚǜǟǡǧǩǫǭǰǵǹǻȁȃȅȇȉȋȍȏȑȓȕȗșțȟȧȩȫȭȯȱȳḁḃḅḇḉḋḍḏḑḓḕḗḙḛḝḟḡḣḥḧḩḫḭḯḱḳḵḷḹḻḽḿṁṃṅṇṉṋṍṏṑṓṕṗṙṛṝṟṡṣṥṧṩṫṭṯṱṳṵṷṹṻṽṿẁẃẅẇẉẋẍẏẑẓẕẖẗẘẙẛạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ', 'aaaaaaceeeeiiiinooooouuuuyyaaaccccdeeeeegggghiiiijklllnnnooorrrssssttuuuuuuwyzzzsouaiouuuuuaagkoojgnaaaeeiioorruusthaeooooyabbbcdddddeeeeefghhhhhiikkkllllmmmnnnnoooopprrrrsssssttttuuuuuvvwwwwwxxyzzzhtwysaaaaaaaaaaaaeeeeeeeeiioooooooooooouuuuuuuyyyy');
        EXECUTE format('CREATE TEXT SEARCH CONFIGURATION %s.backrooms_search (COPY = simple)', home);
    END IF;

    -- A reply's words, folded, one space apart: what the tsvector and the queries are made of.
    EXECUTE format(
        'CREATE FUNCTION %1$s.backrooms_words(t text) RETURNS text LANGUAGE sql IMMUTABLE '
        'STRICT PARALLEL SAFE AS $f$ SELECT regexp_replace(%1$s.backrooms_fold(t), '
        '''[^[:alnum:]]+'', '' '', ''g'') $f$', home);

    -- The box's words as one tsquery: each core (a word without its trailing *) as its pieces
    -- in a row, the last one a prefix where asked; all of them (&&). NULL, which matches
    -- nothing, when no word holds a letter or a digit.
    EXECUTE format($f$
        CREATE FUNCTION %1$s.backrooms_query(cores text[], prefixes boolean[])
        RETURNS tsquery LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $body$
        DECLARE
            i integer;
            term tsquery;
            wanted tsquery;
        BEGIN
            FOR i IN 1 .. coalesce(array_length(cores, 1), 0) LOOP
                term := phraseto_tsquery('simple', %1$s.backrooms_words(cores[i]));
                CONTINUE WHEN numnode(term) = 0;
                IF prefixes[i] THEN
                    term := (term::text || ':*')::tsquery;  -- the text ends with a quoted word
                END IF;
                wanted := CASE WHEN wanted IS NULL THEN term ELSE wanted && term END;
            END LOOP;
            RETURN wanted;
        END
        $body$ $f$, home);
END
$migration$;

-- Kept by the database itself: every writer of replies is covered, and rows stored before this
-- migration are filled in as the column is added.
ALTER TABLE replies ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', backrooms_words(text))) STORED;
CREATE INDEX replies_search ON replies USING gin (search);
