package dev.edgewise.sample

import android.app.Application
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
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import androidx.lifecycle.viewModelScope
import dev.edgewise.AttributeValue
import dev.edgewise.CatalogItem
import dev.edgewise.Embedder
import dev.edgewise.ShopperEventKind
import dev.edgewise.open
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch

/**
 * Holds the shop for the activity's lifetime. The embedding model (all-MiniLM-L6-v2, 80 MiB,
 * fetched on first use) and the shopper's files live in `noBackupFilesDir`: nothing of the
 * shopper's leaves the phone, not even through Auto Backup.
 */
class ShopViewModel(app: Application) : AndroidViewModel(app) {
    private val _shop = MutableStateFlow<ShopController?>(null)
    val shop: StateFlow<ShopController?> = _shop
    val failure = MutableStateFlow<String?>(null)

    fun start() {
        if (_shop.value != null) return
        viewModelScope.launch {
            try {
                val home = getApplication<Application>().noBackupFilesDir
                // The library resolves catalog ids under $EDGEWISE_HOME (native environment).
                android.system.Os.setenv("EDGEWISE_HOME", home.path, true)
                val embedder = Embedder.open("all-minilm-l6-v2")
                _shop.value = ShopController.open(home.resolve("shop").path, embedder, DEMO_CATALOG)
            } catch (e: Exception) { // EdgewiseException, or ErrnoException from setenv
                failure.value = e.message ?: e.javaClass.simpleName
            }
        }
    }

    fun open(id: String) = run { viewModelScope.launch { _shop.value?.open(id) } }
    fun cart(id: String) = run { viewModelScope.launch { _shop.value?.act(id, ShopperEventKind.ADD_TO_CART) } }
    fun notInterested(id: String) = run { viewModelScope.launch { _shop.value?.act(id, ShopperEventKind.DISMISS) } }
    fun search(q: String) = run { viewModelScope.launch { _shop.value?.search(q) } }
    fun erase() = run { viewModelScope.launch { _shop.value?.eraseMyData() } }

    override fun onCleared() {
        _shop.value?.close()
    }

    companion object {
        private fun item(id: String, title: String, description: String, category: String, price: Double) =
            CatalogItem(id, title, description, mapOf(
                "category" to AttributeValue.Text(category),
                "price" to AttributeValue.Number(price),
                "in_stock" to AttributeValue.Flag(true),
            ))

        val DEMO_CATALOG = listOf(
            item("shoe-trail", "Trail running shoe", "Grippy lugged outsole for muddy forest trails", "running", 120.0),
            item("shoe-road", "Road running shoe", "Cushioned, light shoe for asphalt and long runs", "running", 110.0),
            item("watch-gps", "GPS running watch", "Tracks pace, distance and heart rate on every run", "running", 250.0),
            item("jacket-rain", "Rain jacket", "Packable waterproof shell with taped seams", "outdoor", 140.0),
            item("boots-hike", "Hiking boots", "Waterproof leather boots for mountain trails", "outdoor", 170.0),
            item("tea-green", "Sencha green tea", "Loose leaf Japanese green tea, grassy and fresh", "tea", 12.0),
            item("tea-matcha", "Ceremonial matcha", "Stone-ground green tea powder for whisking", "tea", 30.0),
            item("tea-mint", "Peppermint tea", "Caffeine-free herbal infusion of peppermint leaves", "tea", 8.0),
            item("lamp", "Desk lamp", "Adjustable LED lamp for the home office", "office", 45.0),
            item("chair", "Office chair", "Ergonomic chair with lumbar support", "office", 300.0),
        )
    }
}

/** Recommendations that update as the shopper taps items, "more like this", search. */
@Composable
fun ShopScreen(vm: ShopViewModel) {
    val shop by vm.shop.collectAsStateWithLifecycle()
    val failure by vm.failure.collectAsStateWithLifecycle()
    val controller = shop
    if (controller == null) {
        Column(Modifier.fillMaxSize().padding(16.dp)) {
            failure?.let { Text("Failed: $it", color = MaterialTheme.colorScheme.error) }
            Button(onClick = { vm.start() }) { Text("Open the shop (downloads MiniLM, 80 MB)") }
        }
        return
    }
    val state by controller.state.collectAsStateWithLifecycle()
    var query by rememberSaveable { mutableStateOf("") }
    LazyColumn(Modifier.fillMaxSize(), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        item {
            Row(verticalAlignment = Alignment.CenterVertically) {
                OutlinedTextField(value = query, onValueChange = { query = it }, modifier = Modifier.weight(1f),
                    placeholder = { Text("Search by meaning") })
                Button(onClick = { vm.search(query) }, enabled = query.isNotBlank()) { Text("Search") }
            }
            state.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        }
        if (state.results.isNotEmpty()) {
            item { Text("Results for \u201c${state.query}\u201d", style = MaterialTheme.typography.titleMedium) }
            items(state.results, key = { "r-" + it.id }) { PickRow(it, vm) }
        }
        state.viewing?.let { id ->
            item { Text("More like ${ShopViewModel.DEMO_CATALOG.firstOrNull { it.id == id }?.title ?: id}", style = MaterialTheme.typography.titleMedium) }
            items(state.moreLikeThis, key = { "s-" + it.id }) { PickRow(it, vm) }
        }
        item { Text("For you", style = MaterialTheme.typography.titleMedium) }
        items(state.recommendations, key = { "p-" + it.id }) { PickRow(it, vm) }
        item { OutlinedButton(onClick = { vm.erase() }) { Text("Erase my shopping data") } }
    }
}

@Composable
private fun PickRow(p: ShopController.Pick, vm: ShopViewModel) {
    Surface(
        color = MaterialTheme.colorScheme.surfaceVariant,
        shape = MaterialTheme.shapes.medium,
        modifier = Modifier.fillMaxWidth().clickable { vm.open(p.id) },
    ) {
        Column(Modifier.padding(12.dp)) {
            Text(p.title, style = MaterialTheme.typography.bodyLarge)
            // The "why this pick" line, from the signals that ranked it.
            Text(p.why, style = MaterialTheme.typography.labelSmall)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedButton(onClick = { vm.cart(p.id) }) { Text("Add to cart") }
                OutlinedButton(onClick = { vm.notInterested(p.id) }) { Text("Not interested") }
            }
        }
    }
}
