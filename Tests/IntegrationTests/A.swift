import Testing
import PostgresNIO
@Test func c() {}
