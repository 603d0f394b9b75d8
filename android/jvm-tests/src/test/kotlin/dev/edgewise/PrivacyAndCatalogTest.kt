package dev.edgewise

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** The on-device privacy check and the built-in catalog (no model needed). Synthetic data only. */
class PrivacyAndCatalogTest {
    @Test
    fun sensitiveTextIsFlaggedWithItsCategory() {
        val text = "Charge my card 4556 7375 8689 9855 please"
        val r = privacyCheck(text)
        assertTrue(r.sensitive)
        assertTrue(PiiCategory.PAYMENT_CARD in r.categories, "${r.categories}")
        // Spans are UTF-8 byte offsets; this text is ASCII, so they index the String directly.
        val span = r.spans.single { it.category == PiiCategory.PAYMENT_CARD }
        assertEquals("4556 7375 8689 9855", text.substring(span.start.toInt(), span.end.toInt()))
    }

    @Test
    fun ordinaryTextIsNotFlagged() {
        val r = privacyCheck("What are the early symptoms of measles?")
        assertFalse(r.sensitive)
        assertTrue(r.categories.isEmpty())
    }

    @Test
    fun privacyCheckUsesTheSameGateAsTheRouter() {
        // Personal data in prose: at least one of these passes the rules and is caught only by the
        // embedded classifier (core/tests/privacy_gate.rs checks which); the app's privacyCheck must
        // keep all of them local, as the router does.
        listOf(
            "Our baby Leo was born at 29 weeks and is still in the NICU; write an update for the family group chat.",
            "I lost \$12,400 on crypto and haven't told my wife Priya. How do I tell her?",
            "my bank just sent me the code 482913 and a man on the phone says he needs it to stop a fraud, should i give it?",
        ).forEach { assertTrue(privacyCheck(it).sensitive, it) }
    }

    @Test
    fun policyPresetsKeepTheCloudOffByDefault() {
        assertFalse(routerPolicyLocalOnly().cloudEnabled)
        assertTrue(routerPolicyCloudAssist().cloudEnabled)
        assertTrue(routerPolicyFieldWorker().queueWhenOffline)
    }

    @Test
    fun theCatalogListsTheDefaultModelWithAnHttpsSource() {
        val models = listModels()
        val default = defaultModel()
        assertEquals(default, models.first())
        assertEquals("gemma-3-270m", default.id)
        assertEquals(TestSupport.MODEL_FILE, default.file)
        assertEquals(64, default.sha256.length)
        assertTrue(default.sources.any { it is ModelSource.Https && it.url.startsWith("https://") })
        assertEquals("/data/app/files/models/${default.file}", modelPath(default.id, "/data/app/files"))
        val e = assertThrows<EdgewiseException.InvalidParameter> { modelPath("no-such-model", "/tmp") }
        assertTrue(e.reason.contains("no-such-model"))
    }

    @Test
    fun aCatalogDownloadTargetsTheModelPath() {
        val config = defaultFetchConfig().copy(prefer = SourceKind.HTTPS)
        ModelDownload(defaultModel().id, "/data/app/files", config).use { d ->
            assertEquals(modelPath(defaultModel().id, "/data/app/files"), d.destination())
            assertFalse(d.isVerified())
        }
        assertThrows<EdgewiseException.InvalidParameter> { ModelDownload("no-such-model", "/tmp", config) }
    }
}
