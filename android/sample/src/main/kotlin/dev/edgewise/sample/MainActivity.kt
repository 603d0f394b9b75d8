package dev.edgewise.sample

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.activity.viewModels
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.LinearProgressIndicator
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
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import dev.edgewise.sample.ChatController.ModelState

class MainActivity : ComponentActivity() {
    private val vm: ChatViewModel by viewModels()
    private val shopVm: ShopViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        // Targeting API 35+ draws edge to edge on Android 15+ whatever the app asks; opting in
        // here gives the same layout on older versions, and the screen pads itself by the
        // system bars, display cutout and keyboard (safeDrawingPadding) instead of drawing under them.
        enableEdgeToEdge()
        super.onCreate(savedInstanceState)
        setContent {
            MaterialTheme {
                Surface(Modifier.fillMaxSize()) {
                    // Two screens: the routed chat, and the shop (on-device recommendations).
                    var shopTab by rememberSaveable { mutableStateOf(false) }
                    Column(Modifier.fillMaxSize().safeDrawingPadding()) {
                        Row(Modifier.padding(horizontal = 16.dp), horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                            if (shopTab) OutlinedButton(onClick = { shopTab = false }) { Text("Chat") } else Button(onClick = {}) { Text("Chat") }
                            if (shopTab) Button(onClick = {}) { Text("Shop") } else OutlinedButton(onClick = { shopTab = true }) { Text("Shop") }
                        }
                        if (shopTab) Column(Modifier.padding(16.dp)) { ShopScreen(shopVm) } else SampleScreen(vm.chat)
                    }
                }
            }
        }
    }
}

@Composable
fun SampleScreen(chat: ChatController) {
    val model by chat.model.collectAsStateWithLifecycle()
    Column(Modifier.fillMaxSize().safeDrawingPadding().padding(16.dp)) {
        when (val m = model) {
            ModelState.NotDownloaded -> Button(onClick = { chat.start() }) { Text("Download Gemma 3 270M (253 MB)") }
            is ModelState.Downloading -> {
                val p = m.progress
                Text("${p.phase.name.lowercase()} ${p.done.toLong() shr 20} / ${p.total.toLong() shr 20} MB")
                LinearProgressIndicator(
                    progress = { if (p.total > 0L) p.done.toFloat() / p.total.toFloat() else 0f },
                    modifier = Modifier.fillMaxWidth(),
                )
                OutlinedButton(onClick = { chat.cancelDownload() }) { Text("Cancel") }
            }
            ModelState.Loading -> Text("Loading the model…")
            is ModelState.Failed -> {
                Text("Failed: ${m.reason}", color = MaterialTheme.colorScheme.error)
                Button(onClick = { chat.retry() }) { Text("Retry (resumes)") }
            }
            is ModelState.Ready -> ChatPane(chat, m)
        }
    }
}

@Composable
private fun ChatPane(chat: ChatController, ready: ModelState.Ready) {
    val messages by chat.messages.collectAsStateWithLifecycle()
    val generating by chat.generating.collectAsStateWithLifecycle()
    var input by rememberSaveable { mutableStateOf("") }
    Column(Modifier.fillMaxSize()) {
        Text(
            "${ready.info.architecture} on ${ready.info.backend.name.lowercase()}" +
                (ready.info.fallbackReason?.let { " ($it)" } ?: ""),
            style = MaterialTheme.typography.labelSmall,
        )
        LazyColumn(Modifier.weight(1f).fillMaxWidth(), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            items(messages) { msg -> Bubble(msg) }
        }
        Row(verticalAlignment = Alignment.CenterVertically) {
            OutlinedTextField(value = input, onValueChange = { input = it }, modifier = Modifier.weight(1f))
            if (generating) {
                OutlinedButton(onClick = { chat.cancelAnswer() }) { Text("Stop") }
            } else {
                Button(onClick = { chat.send(input.trim()); input = "" }, enabled = input.isNotBlank()) { Text("Send") }
            }
        }
    }
}

@Composable
private fun Bubble(msg: ChatController.Message) {
    val colors = MaterialTheme.colorScheme
    Surface(
        color = if (msg.fromUser) colors.primaryContainer else colors.surfaceVariant,
        shape = MaterialTheme.shapes.medium,
        modifier = Modifier.fillMaxWidth(),
    ) {
        Column(Modifier.padding(12.dp)) {
            Text(msg.text)
            msg.badge?.let { b ->
                Surface(color = colors.secondaryContainer, shape = MaterialTheme.shapes.small, modifier = Modifier.padding(top = 6.dp)) {
                    Text("${b.where} · ${b.why}", style = MaterialTheme.typography.labelSmall, modifier = Modifier.padding(horizontal = 8.dp, vertical = 2.dp))
                }
            }
        }
    }
}
