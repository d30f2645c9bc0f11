// The Swift quick start of README.md (tests/bindings/readme_quickstarts.sh keeps the two
// identical). Not compiled by CI: no Swift toolchain is installed there.
import Evstore

let store = try Store(path: CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "my-store")
try store.append(stream: "greetings", expectedVersion: ExpectedVersion.any,
                 type: "Greeted", payload: Array("hello".utf8))
for try await event in store.events(stream: "greetings") {
    print(event.streamVersion, event.type, String(decoding: event.payload, as: UTF8.self))
}
try store.close()
