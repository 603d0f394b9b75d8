// The sample's logic, in plain Kotlin + coroutines (no Android types), so that the JVM test
// project compiles and runs it against the real library (android/jvm-tests, SampleControllerTest).
// The Android ViewModel only forwards to it.
package dev.edgewise.sample

import dev.edgewise.ChatMessage
import dev.edgewise.CloudEndpoint
import dev.edgewise.DownloadListener
import dev.edgewise.DownloadProgress
import dev.edgewise.EdgewiseException
import dev.edgewise.Engine
import dev.edgewise.EngineConfig
import dev.edgewise.EngineInfo
import dev.edgewise.GenerationParams
import dev.edgewise.ModelDownload
import dev.edgewise.PiiCategory
import dev.edgewise.RequestMeta
import dev.edgewise.RouteReason
import dev.edgewise.RouteTarget
import dev.edgewise.RoutedAnswer
import dev.edgewise.Router
import dev.edgewise.RouterEvent
import dev.edgewise.SessionConfig
import dev.edgewise.SourceKind
import dev.edgewise.assistant
import dev.edgewise.defaultFetchConfig
import dev.edgewise.defaultModel
import dev.edgewise.defaults
import dev.edgewise.of
import dev.edgewise.open
import dev.edgewise.routerPolicyCloudAssist
import dev.edgewise.routerPolicyLocalOnly
import dev.edgewise.stream
import dev.edgewise.user
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * Model download, then a routed chat: every message goes through the privacy [Router], which
 * answers on the device unless [cloud] is set, the message holds no personal data and the user
 * asked for the cloud (`send(..., useCloud = true)`). Each answer carries a [Badge] built from the
 * router's decision. [cloudApiKey] is the bearer key for [cloud] (never logged).
 */
class ChatController(
    private val scope: CoroutineScope,
    private val homeDir: String,
    private val engineConfig: EngineConfig = EngineConfig.defaults(),
    private val cloud: CloudEndpoint? = null,
    private val cloudApiKey: String? = null,
) : AutoCloseable {
    sealed interface ModelState {
        data object NotDownloaded : ModelState
        data class Downloading(val progress: DownloadProgress) : ModelState
        data object Loading : ModelState
        data class Ready(val info: EngineInfo) : ModelState
        data class Failed(val reason: String) : ModelState
    }

    /** Where an answer came from, and why. */
    data class Badge(val where: String, val why: String)

    data class Message(val fromUser: Boolean, val text: String, val badge: Badge? = null)

    private val _model = MutableStateFlow<ModelState>(ModelState.NotDownloaded)
    val model: StateFlow<ModelState> = _model.asStateFlow()
    private val _messages = MutableStateFlow<List<Message>>(emptyList())
    val messages: StateFlow<List<Message>> = _messages.asStateFlow()
    private val _generating = MutableStateFlow(false)
    val generating: StateFlow<Boolean> = _generating.asStateFlow()

    private var download: ModelDownload? = null
    private var engine: Engine? = null
    private var router: Router? = null
    private val history = mutableListOf<ChatMessage>()
    private var answering: Job? = null
    private var starting: Job? = null

    /** The catalog's default model, fetched over HTTPS into `<homeDir>/models/`. */
    fun defaultDownload(): ModelDownload =
        ModelDownload(defaultModel().id, homeDir, defaultFetchConfig().copy(prefer = SourceKind.HTTPS))

    /**
     * Downloads (resuming, verifying) and loads the model. While a start is running (a double tap
     * on "Download"), or once the model is loaded, it returns the same job instead of starting a
     * second download of the same file.
     */
    fun start(download: ModelDownload = defaultDownload()): Job {
        starting?.let { if (it.isActive || engine != null) return it }
        return launchStart(download).also { starting = it }
    }

    private fun launchStart(download: ModelDownload): Job = scope.launch {
        this@ChatController.download = download
        try {
            val path = withContext(Dispatchers.IO) {
                download.fetch(object : DownloadListener {
                    override fun onProgress(progress: DownloadProgress) {
                        _model.value = ModelState.Downloading(progress)
                    }
                })
            }
            _model.value = ModelState.Loading
            val e = Engine.open(path, engineConfig)
            engine = e
            val policy = if (cloud != null) routerPolicyCloudAssist() else routerPolicyLocalOnly()
            router = Router(e, SessionConfig.defaults(), policy, cloud, cloudApiKey, "$homeDir/router")
            _model.value = ModelState.Ready(e.info())
        } catch (e: EdgewiseException) {
            _model.value = ModelState.Failed(e.message ?: e.toString())
        }
    }

    /** A new download of the same model: a cancelled one stays cancelled, and this one resumes. */
    fun retry(): Job = start()

    /**
     * Routes [text] (with the conversation so far) and streams the answer into the last message;
     * [useCloud] is the user's "ask the cloud" request, honoured only when nothing is sensitive.
     */
    fun send(text: String, params: GenerationParams = GenerationParams.defaults(), useCloud: Boolean = false): Job? {
        val r = router ?: return null
        if (_generating.value) return null
        val messages = history + user(text)
        _messages.update { it + Message(fromUser = true, text = text) + Message(fromUser = false, text = "") }
        _generating.value = true
        return scope.launch {
            try {
                r.stream(messages, RequestMeta.of(cloudRequested = useCloud), params).collect { event ->
                    when (event) {
                        is RouterEvent.Text -> updateLast { it.copy(text = it.text + event.text) }
                        RouterEvent.Reset -> updateLast { it.copy(text = "") }
                        is RouterEvent.Done -> {
                            updateLast { it.copy(text = event.answer.text, badge = badgeFor(event.answer)) }
                            history += user(text)
                            history += assistant(event.answer.text)
                        }
                    }
                }
            } catch (e: EdgewiseException) {
                updateLast { it.copy(text = "⚠ ${e.message}") }
            } finally {
                _generating.value = false
            }
        }.also { answering = it }
    }

    private fun updateLast(change: (Message) -> Message) {
        _messages.update { msgs -> msgs.dropLast(1) + change(msgs.last()) }
    }

    /** Stops the current answer (cancelling the flow cancels the native generation). */
    fun cancelAnswer() {
        answering?.cancel()
    }

    /** Stops the download; partial data is kept and `start()` resumes it. */
    fun cancelDownload() {
        download?.cancel()
    }

    override fun close() {
        cancelAnswer()
        cancelDownload()
        router?.close()
        engine?.close()
    }
}

private fun PiiCategory.label(): String = name.lowercase().replace('_', ' ')

/** Where an answer came from and the router's main reason, in words for the badge. */
internal fun badgeFor(a: RoutedAnswer): ChatController.Badge {
    val where = if (a.servedBy == RouteTarget.CLOUD) "Cloud" else "On device"
    val reasons = a.decision.reasons
    val why = when {
        RouteReason.SENSITIVE in reasons -> "contains personal data: " + a.decision.categories.joinToString { it.label() }
        a.fallback != null -> "the cloud failed (${a.fallback!!.kind.name.lowercase()}); answered on the device"
        RouteReason.CLOUD_DISABLED in reasons -> "local-only policy: the cloud is off"
        else -> reasons.joinToString { it.name.lowercase().replace('_', ' ') }
    }
    return ChatController.Badge(where, why)
}
