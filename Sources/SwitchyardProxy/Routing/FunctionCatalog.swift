/// Which function names are safe to call on a replica, keyed by name alone (pg_proc's proname).
///
/// Schemas and argument types are ignored on purpose: the classifier sees names, not resolved functions,
/// so a name is safe only if every function of that name, in every schema and with every signature, is.
public struct FunctionCatalog: Sendable {
    let safeNames: ByteNameTable
    /// Knows only PostgreSQL's own functions (`builtin`), so `myschema.lower(...)` can't be vouched for.
    let onlyBuiltins: Bool
    /// Names of unlogged relations (pg_class.relpersistence = 'u'), as stored: a standby has no contents
    /// for them, so a query naming one goes to the primary. Empty in the built-in catalog.
    let unloggedRelations: ByteNameTable
    let hasUnloggedRelations: Bool

    /// Builds from pg_proc rows `(proname, provolatile)`, volatility "i", "s" or "v": a name is safe if every
    /// overload is immutable or stable, or it is on `readOnlyVolatile`, and it is never on the always-write list.
    public init(rows: [(name: String, volatility: Character)], unloggedRelations: [String] = []) {
        var nonVolatile: [String: Bool] = [:]
        for row in rows {
            let stable = row.volatility == "i" || row.volatility == "s"
            nonVolatile[row.name] = (nonVolatile[row.name] ?? true) && stable
        }
        self.init(names: nonVolatile.compactMap { $0.value ? $0.key : nil }, onlyBuiltins: false, unloggedRelations: unloggedRelations)
    }

    private init(names: some Sequence<String>, onlyBuiltins: Bool, unloggedRelations: [String] = []) {
        let candidates = Set(names).union(Self.readOnlyVolatile)
        safeNames = ByteNameTable(candidates.lazy.map { Array($0.utf8) }.filter { !Self.alwaysWrites($0) }.map { ($0, 1) })
        self.onlyBuiltins = onlyBuiltins
        self.unloggedRelations = ByteNameTable(Set(unloggedRelations).map { (Array($0.utf8), UInt16(1)) })
        self.hasUnloggedRelations = !unloggedRelations.isEmpty
    }

    /// Used until pg_proc has been loaded: common built-ins that are immutable or stable in pg_proc.
    public static let builtin = FunctionCatalog(names: builtinNonVolatile.split(separator: " ").map(String.init), onlyBuiltins: true)

    /// `lowercasedName` is a function name as PostgreSQL would look it up (unquoted names lowercased).
    public func isReadOnly(_ lowercasedName: some Collection<UInt8>) -> Bool {
        safeNames.value(for: lowercasedName) != nil
    }

    /// Volatile in pg_proc, but they only read, wait, or report the server's own state, all of which a
    /// hot standby can do: clocks and sleeps, randomness, recovery/WAL-replay status, version and settings,
    /// connection info. None writes, takes a lock another server would need, or assigns a transaction id.
    static let readOnlyVolatile: Set<String> = [
        "random", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "clock_timestamp", "timeofday",
        "statement_timestamp", "transaction_timestamp", "pg_is_in_recovery", "pg_last_wal_replay_lsn",
        "pg_last_wal_receive_lsn", "pg_last_xact_replay_timestamp", "pg_backend_pid", "gen_random_uuid",
        "pg_postmaster_start_time", "version", "current_setting", "inet_client_addr", "inet_client_port",
        "inet_server_addr", "inet_server_port",
    ]

    /// Never safe, whatever pg_proc says: they write (sequences, large objects, NOTIFY, remote links, slots),
    /// change session state the replica wouldn't have (set_config, currval), take advisory locks, assign a
    /// transaction id, signal other backends, or fail on a standby (pg_current_wal_*_lsn, pg_switch_wal).
    static func alwaysWrites(_ name: [UInt8]) -> Bool {
        if alwaysWriteNames.contains(name) { return true }
        return alwaysWritePrefixes.contains { name.starts(with: $0) }
    }

    private static let alwaysWriteNames: Set<[UInt8]> = Set([
        "nextval", "setval", "currval", "lastval", "set_config", "txid_current", "txid_current_if_assigned",
        "pg_current_xact_id", "pg_current_xact_id_if_assigned", "pg_current_wal_lsn", "pg_current_wal_insert_lsn",
        "pg_current_wal_flush_lsn", "pg_notify", "pg_terminate_backend", "pg_cancel_backend", "pg_switch_wal",
        "loread", "lowrite",
    ].map { Array($0.utf8) })

    private static let alwaysWritePrefixes: [[UInt8]] =
        ["pg_advisory", "pg_try_advisory", "lo_", "dblink", "pg_create_"].map { Array($0.utf8) }

    /// Immutable or stable in pg_proc (every overload), so they can neither write nor depend on the server.
    private static let builtinNonVolatile = """
        count sum avg min max array_agg string_agg bool_and bool_or every bit_and bit_or stddev stddev_pop \
        stddev_samp variance var_pop var_samp corr covar_pop covar_samp regr_slope regr_intercept percentile_cont \
        percentile_disc mode any_value json_agg jsonb_agg json_object_agg jsonb_object_agg xmlagg \
        row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value \
        lower upper initcap length char_length character_length octet_length bit_length substr substring left \
        right lpad rpad ltrim rtrim btrim replace reverse repeat split_part strpos position starts_with concat \
        concat_ws format md5 sha256 encode decode to_hex ascii chr translate quote_ident quote_literal \
        quote_nullable regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table \
        regexp_like regexp_count regexp_substr regexp_instr string_to_array array_to_string string_to_table \
        overlay convert_from \
        abs ceil ceiling floor round trunc mod power pow sqrt cbrt exp ln log log10 sign pi degrees radians sin \
        cos tan asin acos atan atan2 div width_bucket gcd lcm \
        now date_trunc date_part date_bin extract age to_char to_date to_timestamp to_number make_date make_time \
        make_timestamp make_timestamptz make_interval justify_days justify_hours justify_interval isfinite timezone \
        array_length array_upper array_lower array_ndims array_dims cardinality array_position array_positions \
        array_remove array_replace array_append array_prepend array_cat array_fill unnest generate_series \
        generate_subscripts array_to_json \
        to_json to_jsonb row_to_json json_build_object jsonb_build_object json_build_array jsonb_build_array \
        jsonb_object json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text \
        json_array_elements json_array_elements_text jsonb_array_elements jsonb_array_elements_text \
        json_array_length jsonb_array_length json_each json_each_text jsonb_each jsonb_each_text json_object_keys \
        jsonb_object_keys json_typeof jsonb_typeof jsonb_set jsonb_set_lax jsonb_insert jsonb_pretty \
        jsonb_strip_nulls json_strip_nulls jsonb_path_query jsonb_path_query_array jsonb_path_query_first \
        jsonb_path_exists jsonb_path_match json_populate_record jsonb_populate_record json_populate_recordset \
        jsonb_populate_recordset json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset \
        num_nulls num_nonnulls text int2 int4 int8 float4 float8 bool date int4range int8range numrange tsrange \
        tstzrange daterange to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank \
        ts_rank_cd ts_headline \
        current_database current_schema current_schemas pg_typeof format_type has_table_privilege \
        has_schema_privilege has_database_privilege has_column_privilege has_function_privilege pg_has_role \
        to_regclass to_regtype to_regproc obj_description col_description pg_get_userbyid pg_get_indexdef \
        pg_get_viewdef pg_get_constraintdef pg_get_expr pg_get_functiondef pg_table_is_visible pg_size_pretty \
        pg_column_size pg_encoding_to_char
        """
}

/// Open-addressing hash table from byte strings to a 16-bit payload, built once; lookups allocate nothing.
/// Slot layout: hash tag (16 bits) | offset into `storage` (24) | length (8) | payload (16); 0 is empty.
struct ByteNameTable: Sendable {
    private var storage: [UInt8] = []
    private var slots: [UInt64]

    init(_ entries: some Sequence<([UInt8], UInt16)>) {
        let entries = Array(entries)
        var capacity = 16
        while capacity < entries.count * 2 { capacity <<= 1 }
        slots = Array(repeating: 0, count: capacity)
        for (name, payload) in entries where !name.isEmpty && name.count < 256 && value(for: name) == nil {
            let hash = View.hash(name)
            var i = Int(truncatingIfNeeded: hash) & (capacity - 1)
            while slots[i] != 0 { i = (i + 1) & (capacity - 1) }
            slots[i] = (hash >> 48) << 48 | UInt64(storage.count) << 24 | UInt64(name.count) << 16 | UInt64(payload)
            storage.append(contentsOf: name)
        }
    }

    func value(for name: some Collection<UInt8>) -> UInt16? {
        withView { $0.value(for: name) }
    }

    /// Lends the table as raw pointers, so a whole classification does its lookups without reference counting.
    func withView<R>(_ body: (View) -> R) -> R {
        storage.withUnsafeBufferPointer { storage in
            slots.withUnsafeBufferPointer { slots in body(View(storage: storage, slots: slots)) }
        }
    }

    struct View {
        let storage: UnsafeBufferPointer<UInt8>
        let slots: UnsafeBufferPointer<UInt64>

        func value(for name: some Collection<UInt8>) -> UInt16? {
            let count = name.count
            guard count < 256, slots.count > 0 else { return nil }
            let hash = Self.hash(name)
            let mask = slots.count - 1
            var i = Int(truncatingIfNeeded: hash) & mask
            while true {
                let slot = slots[i]
                if slot == 0 { return nil }
                if slot >> 48 == hash >> 48 && Int((slot >> 16) & 0xFF) == count {
                    var offset = Int((slot >> 24) & 0xFF_FFFF)
                    var equal = true
                    for b in name {
                        if storage[offset] != b { equal = false; break }
                        offset += 1
                    }
                    if equal { return UInt16(truncatingIfNeeded: slot) }
                }
                i = (i + 1) & mask
            }
        }

        /// Packs 8 bytes at a time into a word and mixes once per word: short names cost one multiply.
        @inline(__always) static func hash(_ name: some Collection<UInt8>) -> UInt64 {
            var h = UInt64(truncatingIfNeeded: name.count) &* 0x9E37_79B9_7F4A_7C15
            var word: UInt64 = 0
            var shift: UInt64 = 0
            for b in name {
                word |= UInt64(b) << shift
                shift += 8
                if shift == 64 {
                    h = (h ^ word) &* 0xBF58_476D_1CE4_E5B9
                    word = 0
                    shift = 0
                }
            }
            h = (h ^ word) &* 0x94D0_49BB_1331_11EB
            return h ^ (h >> 29)
        }
    }
}
