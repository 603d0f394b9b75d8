import SwiftUI

@main
struct EdgewiseSampleApp: App {
    var body: some Scene {
        WindowGroup {
            TabView {
                ContentView().tabItem { Label("Chat", systemImage: "bubble.left") }
                ShopView().tabItem { Label("Shop", systemImage: "bag") }
            }
        }
    }
}
