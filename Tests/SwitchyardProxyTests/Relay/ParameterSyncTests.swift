import Testing
@testable import SwitchyardProxy

@Suite struct ParameterSyncTests {
    let sync = ParameterSync(extraNames: ["work_mem"])

    @Test func takesEveryStartupSettingIncludingOptions() {
        let values = sync.startupValues([("user", "app"), ("database", "db"), ("DateStyle", "ISO, DMY"),
                                         ("application_name", "psql"), ("geqo", "off"),
                                         ("options", #"-c search_path=a,b --work-mem=64MB -cstatement_timeout=5s -c x=has\ space"#)])
        #expect(values == ["datestyle": "ISO, DMY", "application_name": "psql", "geqo": "off", "search_path": "a, b",
                           "work_mem": "64MB", "statement_timeout": "5s", "x": "has space"])
        #expect(sync.isTracked("DateStyle") && !sync.isTracked("geqo"))
    }

    @Test func setsOnlyWhatDiffers() {
        let query = sync.synchronization(client: ["application_name": "psql", "timezone": "UTC"],
                                         server: ["application_name": "", "timezone": "UTC"])
        #expect(query == "SELECT pg_catalog.set_config(E'application_name', E'psql', false)")
        #expect(sync.synchronization(client: ["timezone": "UTC"], server: ["timezone": "UTC"]) == nil)
    }

    @Test func quotesValuesSafely() {
        let query = sync.synchronization(client: ["application_name": #"it's a \ test"#], server: [:])
        #expect(query == #"SELECT pg_catalog.set_config(E'application_name', E'it''s a \\ test', false)"#)
    }

    @Test func listsEveryDifferenceInNameOrder() {
        let query = sync.synchronization(client: ["timezone": "UTC", "datestyle": "ISO"], server: [:])
        #expect(query == "SELECT pg_catalog.set_config(E'datestyle', E'ISO', false), pg_catalog.set_config(E'timezone', E'UTC', false)")
    }
}
