// The shop screen's composables: Compose only (no Android types, no AndroidX lifecycle), so that
// ../jvm-tests compiles them against Compose for Desktop from Maven Central (the AARs of the
// Android build are not on Maven Central). ShopScreen.kt (src/main/kotlin) feeds them from the
// Android view model.
package dev.edgewise.sample

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp

/** What the shopper can do on the screen (each runs off the main thread in the caller). */
class ShopActions(
    val start: () -> Unit,
    val open: (String) -> Unit,
    val cart: (String) -> Unit,
    val notInterested: (String) -> Unit,
    val search: (String) -> Unit,
    val erase: () -> Unit,
)

/**
 * Recommendations that update as the shopper taps items, "more like this", search. [state] is
 * `null` until the shop is open (then a button opens it, and [failure] says why it failed).
 */
@Composable
fun ShopContent(state: ShopController.State?, failure: String?, titleOf: (String) -> String?, actions: ShopActions) {
    if (state == null) {
        Column(Modifier.fillMaxSize().padding(16.dp)) {
            failure?.let { Text("Failed: $it", color = MaterialTheme.colorScheme.error) }
            Button(onClick = actions.start) { Text("Open the shop (downloads MiniLM, 80 MB)") }
        }
        return
    }
    var query by rememberSaveable { mutableStateOf("") }
    LazyColumn(Modifier.fillMaxSize(), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        item {
            Row(verticalAlignment = Alignment.CenterVertically) {
                OutlinedTextField(value = query, onValueChange = { query = it }, modifier = Modifier.weight(1f),
                    placeholder = { Text("Search by meaning") })
                Button(onClick = { actions.search(query) }, enabled = query.isNotBlank()) { Text("Search") }
            }
            state.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        }
        if (state.results.isNotEmpty()) {
            item { Text("Results for \u201c${state.query}\u201d", style = MaterialTheme.typography.titleMedium) }
            items(state.results, key = { "r-" + it.id }) { PickRow(it, actions) }
        }
        state.viewing?.let { id ->
            item { Text("More like ${titleOf(id) ?: id}", style = MaterialTheme.typography.titleMedium) }
            items(state.moreLikeThis, key = { "s-" + it.id }) { PickRow(it, actions) }
        }
        item { Text("For you", style = MaterialTheme.typography.titleMedium) }
        items(state.recommendations, key = { "p-" + it.id }) { PickRow(it, actions) }
        item { OutlinedButton(onClick = actions.erase) { Text("Erase my shopping data") } }
    }
}

@Composable
private fun PickRow(p: ShopController.Pick, actions: ShopActions) {
    Surface(
        color = MaterialTheme.colorScheme.surfaceVariant,
        shape = MaterialTheme.shapes.medium,
        modifier = Modifier.fillMaxWidth().clickable { actions.open(p.id) },
    ) {
        Column(Modifier.padding(12.dp)) {
            Text(p.title, style = MaterialTheme.typography.bodyLarge)
            // The "why this pick" line, from the signals that ranked it.
            Text(p.why, style = MaterialTheme.typography.labelSmall)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedButton(onClick = { actions.cart(p.id) }) { Text("Add to cart") }
                OutlinedButton(onClick = { actions.notInterested(p.id) }) { Text("Not interested") }
            }
        }
    }
}
