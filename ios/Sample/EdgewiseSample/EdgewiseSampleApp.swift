import SwiftUI

@main
struct EdgewiseSampleApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
