package dev.edgewise.sample

import android.app.Application
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
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

/**
 * The shop screen on Android: the view model's flows collected with the lifecycle, rendered by
 * [ShopContent] (src/main/ui, Compose only, also compiled against Compose for Desktop by
 * ../jvm-tests).
 */
@Composable
fun ShopScreen(vm: ShopViewModel) {
    val shop by vm.shop.collectAsStateWithLifecycle()
    val failure by vm.failure.collectAsStateWithLifecycle()
    val controller = shop
    val state = controller?.state?.collectAsStateWithLifecycle()?.value
    ShopContent(
        state = state,
        failure = failure,
        titleOf = { id -> ShopViewModel.DEMO_CATALOG.firstOrNull { it.id == id }?.title },
        actions = ShopActions(
            start = vm::start,
            open = { vm.open(it) },
            cart = { vm.cart(it) },
            notInterested = { vm.notInterested(it) },
            search = { vm.search(it) },
            erase = { vm.erase() },
        ),
    )
}
